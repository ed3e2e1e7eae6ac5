DROP TABLE pets;
DROP TABLE keepers;
