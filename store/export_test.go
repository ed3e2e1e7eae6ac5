package store

// ASCIILower is asciiLower for the tests of package store_test: the search
// test's plain scan folds names and queries as the search itself does.
var ASCIILower = asciiLower
