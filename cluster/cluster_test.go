package cluster_test

import (
	"regexp"
	"testing"

	"github.com/phonehome/phonehome/cluster"
)

// A node's name says where it runs, and no two processes share one.
func TestNodeNameIsUniquePerProcess(t *testing.T) {
	t.Parallel()
	a, b := cluster.NodeName(), cluster.NodeName()
	if a == b || !regexp.MustCompile(`^[^/]+/\d+/[0-9a-f]{6}$`).MatchString(a) {
		t.Fatalf("names %q and %q", a, b)
	}
}
