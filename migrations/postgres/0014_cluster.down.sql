DROP TABLE cluster_presence;
DROP TABLE cluster_leases;
