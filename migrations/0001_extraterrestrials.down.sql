DROP TABLE extraterrestrials;
