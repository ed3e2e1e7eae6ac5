DROP TABLE job_telemetry;
