DROP TABLE job_cron_runs;
DROP TABLE job_cron_entries;
