-- A node's process is known by more than its id: after a reboot (or once
-- ids wrap) another process may hold the same pid, and a rescue that asked
-- only "is the pid alive?" left the dead node's jobs executing forever. The
-- boot id (/proc/sys/kernel/random/boot_id) names one boot of the machine;
-- proc_start (field 22 of /proc/<pid>/stat, clock ticks after boot) names
-- one process of that boot. NULL where the system does not tell (old rows,
-- systems without /proc): such a node is judged by its heartbeat's age.
-- (PostgreSQL twin of ../sqlite/0010.)
ALTER TABLE job_nodes ADD COLUMN boot_id text;
ALTER TABLE job_nodes ADD COLUMN proc_start bigint;
