package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestFaultSecondServerOnOneSQLiteFile: a second phonehome on the SQLite
// file another one serves is refused in one line that names the first and
// points to PostgreSQL, and exits non-zero; once the first is killed with
// SIGKILL (no clean stop), the kernel has dropped its lock and a new
// server starts on the file.
func TestFaultSecondServerOnOneSQLiteFile(t *testing.T) {
	skipShort(t, "runs the real binary")
	bin := phonehomeBinary(t, true)
	db := filepath.Join(t.TempDir(), "one.db")
	first := startFaultServer(t, bin, db)

	code, _, stderr := runFaultBinary(t, bin, nil, "serve", "-db", db, "-addr", "127.0.0.1:0")
	line := strings.TrimSpace(stderr)
	if code == 0 || strings.Count(line, "\n") != 0 {
		t.Fatalf("second server: exit %d, stderr %q; want a non-zero exit and one line", code, stderr)
	}
	for _, want := range []string{"in use by another phonehome", "PostgreSQL"} {
		if !strings.Contains(line, want) {
			t.Errorf("second server said %q; want it to say %q", line, want)
		}
	}

	first.kill()
	again := startFaultServer(t, bin, db)
	if status, _ := faultCall(t, faultClient, "GET", again.URL+"/healthz", "", ""); status != 200 {
		t.Fatalf("after the first was killed, a new server answers /healthz with %d", status)
	}
	again.stop()
}
