DROP INDEX jobs_list_kind;
DROP INDEX jobs_list_queue;
