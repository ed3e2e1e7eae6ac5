package main

// Fault test: a broken database or port at start-up is one clear line and an exit.

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/phonehome/phonehome/store"
)

// TestFaultStartup breaks the database or the port in the ways a person
// might, and expects one line on stderr that says what to do, a non-zero
// exit, and no stack trace. When run as root, which file permissions do not
// stop, the permission cases run the binary as user nobody (65534); if it
// cannot, they are skipped, but under CI=1 (where the suite runs as root)
// they fail instead.
func TestFaultStartup(t *testing.T) {
	bin := phonehomeBinary(t, false)
	// A folder anybody may enter, so that nobody can run the binary in it:
	// under a temp folder whose every parent others may enter.
	base, err := os.MkdirTemp(reachableTempRoot(), "phonehome-startup-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		filepath.WalkDir(base, func(p string, d os.DirEntry, err error) error {
			if d != nil && d.IsDir() {
				os.Chmod(p, 0o755)
			}
			return nil
		})
		os.RemoveAll(base)
	})
	if err := os.Chmod(base, 0o777); err != nil {
		t.Fatal(err)
	}
	var nobody *syscall.Credential
	noNobody := "" // why the permission cases cannot run as nobody
	if os.Geteuid() == 0 {
		t.Log("running as root: the permission cases run the binary as user nobody (65534)")
		nobody = &syscall.Credential{Uid: 65534, Gid: 65534, NoSetGroups: true}
		copied := filepath.Join(base, "phonehome")
		data, err := os.ReadFile(bin)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(copied, data, 0o755); err != nil {
			t.Fatal(err)
		}
		bin = copied
		// A container may forbid changing user: then root cannot be
		// stopped by permissions, and those cases are skipped.
		cmd := exec.Command(bin, "version")
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: nobody}
		if out, err := cmd.CombinedOutput(); err != nil {
			noNobody = fmt.Sprintf("cannot run %s as user nobody: %v %s", bin, err, bytes.TrimSpace(out))
			t.Log(noNobody)
			nobody = nil
		}
	}
	latest := int(store.LatestSchemaVersion())
	// migrated makes a folder (mode 0777) with a migrated database in it.
	migrated := func(t *testing.T, name string) (dir, db string) {
		dir = filepath.Join(base, name)
		if err := os.Mkdir(dir, 0o777); err != nil {
			t.Fatal(err)
		}
		os.Chmod(dir, 0o777)
		db = filepath.Join(dir, "phonehome.db")
		if code, _, stderr := runFaultBinary(t, bin, nil, "migrate", "-db", db); code != 0 {
			t.Fatalf("migrate: %d %s", code, stderr)
		}
		for _, f := range []string{db, db + "-wal", db + "-shm"} {
			os.Chmod(f, 0o666)
		}
		return dir, db
	}
	sqlExec := func(t *testing.T, db, q string) {
		conn := openFaultDB(t, db)
		if _, err := conn.Exec(q); err != nil {
			t.Fatal(err)
		}
		conn.Close()
	}
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()

	tests := []struct {
		name  string
		setup func(t *testing.T) (db string, args []string)
		cred  *syscall.Credential
		// permissions: the case relies on file permissions.
		permissions bool
		want        string // the line contains this
	}{
		{name: "database file unreadable", cred: nobody, permissions: true, want: "readable",
			setup: func(t *testing.T) (string, []string) {
				_, db := migrated(t, "unreadable")
				os.Chmod(db, 0)
				return db, nil
			}},
		{name: "not a database", want: "not a SQLite database",
			setup: func(t *testing.T) (string, []string) {
				db := filepath.Join(base, "notes.db")
				os.WriteFile(db, bytes.Repeat([]byte("these are my notes, not a database\n"), 300), 0o666)
				return db, nil
			}},
		{name: "read-only folder, database in it", cred: nobody, permissions: true, want: "cannot write",
			setup: func(t *testing.T) (string, []string) {
				dir, db := migrated(t, "readonly-existing")
				os.Remove(db + "-wal")
				os.Remove(db + "-shm")
				os.Chmod(dir, 0o555)
				return db, nil
			}},
		{name: "read-only folder, new database", cred: nobody, permissions: true, want: "cannot",
			setup: func(t *testing.T) (string, []string) {
				dir := filepath.Join(base, "readonly-new")
				os.Mkdir(dir, 0o555)
				os.Chmod(dir, 0o555)
				return filepath.Join(dir, "phonehome.db"), nil
			}},
		{name: "dirty migration", want: "phonehome migrate -force " + strconv.Itoa(latest-1),
			setup: func(t *testing.T) (string, []string) {
				_, db := migrated(t, "dirty")
				sqlExec(t, db, "UPDATE schema_migrations SET dirty = 1")
				return db, nil
			}},
		{name: "database from a newer version", want: "run a newer phonehome",
			setup: func(t *testing.T) (string, []string) {
				_, db := migrated(t, "newer")
				sqlExec(t, db, fmt.Sprintf("UPDATE schema_migrations SET version = %d", latest+1))
				return db, nil
			}},
		{name: "port in use", want: "listen on " + busy.Addr().String(),
			setup: func(t *testing.T) (string, []string) {
				_, db := migrated(t, "port")
				return db, []string{"-addr", busy.Addr().String()}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.permissions && os.Geteuid() == 0 && tt.cred == nil {
				if os.Getenv("CI") != "" {
					t.Fatalf("CI=%s: this case must run, but the test runs as root, which permissions do not stop, and %s",
						os.Getenv("CI"), noNobody)
				}
				t.Skip("running as root, which permissions do not stop, and user nobody is not available: " + noNobody)
			}
			db, extra := tt.setup(t)
			for _, cmd := range [][]string{
				append([]string{"serve", "-db", db, "-addr", "127.0.0.1:0"}, extra...),
				{"migrate", "-db", db},
			} {
				if tt.name == "port in use" && cmd[0] == "migrate" {
					continue
				}
				code, _, stderr := runFaultBinary(t, bin, tt.cred, cmd...)
				line := strings.TrimSpace(stderr)
				switch {
				case code == 0:
					t.Errorf("phonehome %s: exit 0, want an error (stderr %q)", cmd[0], stderr)
				case strings.Count(line, "\n") > 0:
					t.Errorf("phonehome %s: more than one line on stderr:\n%s", cmd[0], stderr)
				case !strings.HasPrefix(line, "phonehome: "):
					t.Errorf("phonehome %s: the line does not start with \"phonehome: \": %q", cmd[0], line)
				case strings.Contains(line, "goroutine ") || strings.Contains(line, "panic") || strings.Contains(line, ".go:"):
					t.Errorf("phonehome %s: a stack trace or panic: %q", cmd[0], line)
				case !strings.Contains(line, tt.want):
					t.Errorf("phonehome %s: %q does not say %q", cmd[0], line, tt.want)
				default:
					t.Logf("phonehome %s: exit %d: %s", cmd[0], code, line)
				}
			}
		})
	}
}

// reachableTempRoot is the temp folder if every folder on its path lets
// others in (so user nobody can reach what the test makes in it), else
// /tmp, which does: a private $TMPDIR would stop nobody before the
// permissions under test do.
func reachableTempRoot() string {
	dir := os.TempDir()
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil || fi.Mode().Perm()&0o001 == 0 {
			return "/tmp"
		}
		if d == filepath.Dir(d) {
			return dir
		}
	}
}
