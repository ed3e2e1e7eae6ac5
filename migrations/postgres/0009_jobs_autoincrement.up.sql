-- On SQLite this migration rebuilds the jobs table with AUTOINCREMENT, so a
-- job id is never given twice. Here the identity sequence of 0002 never
-- gave one twice in the first place: nothing to do but keep the version
-- numbers of both dialects in step.
SELECT 1;
