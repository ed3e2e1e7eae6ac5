ALTER TABLE job_nodes DROP COLUMN proc_start;
ALTER TABLE job_nodes DROP COLUMN boot_id;
