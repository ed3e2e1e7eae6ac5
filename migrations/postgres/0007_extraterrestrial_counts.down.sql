DROP TRIGGER extraterrestrials_counts_update ON extraterrestrials;
DROP TRIGGER extraterrestrials_counts_delete ON extraterrestrials;
DROP TRIGGER extraterrestrials_counts_insert ON extraterrestrials;
DROP FUNCTION extraterrestrials_counts_update();
DROP FUNCTION extraterrestrials_counts_delete();
DROP FUNCTION extraterrestrials_counts_insert();
DROP TABLE extraterrestrial_counts;
