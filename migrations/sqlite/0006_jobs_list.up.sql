-- The dashboard's job list (jobs/list.go): newest first, filtered by queue or
-- kind, optionally by state. With state after the filter column, every
-- filter combination is answered by one short backward index range per state
-- (merged with UNION ALL), so a page costs the same with 1,000,000 jobs as
-- with 100. (state, id) already exists as jobs_by_state.
CREATE INDEX jobs_list_queue ON jobs (queue, state, id);
CREATE INDEX jobs_list_kind ON jobs (kind, state, id);
