DROP TABLE live_event_trims;
DROP TABLE live_events;
