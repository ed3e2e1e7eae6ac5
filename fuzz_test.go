package main

// Fuzz tests of the command line. The seed corpus runs in plain `go test`;
// `go test -fuzz=FuzzX .` explores further. Arguments are one string split
// at NUL bytes.

import (
	"bytes"
	"errors"
	"flag"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func fuzzArgs(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, "\x00")
}

// FuzzParseServe: any server command line is either refused with one line
// naming the problem (a usage error: exit 2) or accepted with a Config
// that holds its invariants and that, written back as flags, parses to the
// same Config.
func FuzzParseServe(f *testing.F) {
	for _, s := range []string{
		"", "-addr\x00127.0.0.1:0", "-answer-rate\x000.5\x00-backoff\x000s\x00-poll\x0050ms",
		"-answer-rate\x00NaN", "-answer-rate\x00-0", "-answer-rate\x001e-320", "-answer-rate=Inf", "-backoff\x00oban",
		"-backoff\x00-1s", "-backoff\x00OBAN", "-poll\x000s", "-poll\x00-1ns", "-grace\x000s", "-pet-tick\x001ms",
		"-pet-tick\x00999us", "-log-level\x00DEBUG", "-log-level\x00info+2", "-log-level\x00loud",
		"-addr\x008080", "-addr\x00[::1]:0", "-addr\x00:0", "-addr\x00a:b:c", "--addr=127.0.0.1:1", "-db\x00", "-h",
		"-nope", "-poll", "stray", "-poll\x001h\x00stray", "-answer-rate\x000x1p-2", "-grace\x009223372036854775807ns",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		args := fuzzArgs(in)
		var stderr bytes.Buffer
		cfg, err := parseServe(args, &stderr)
		if err != nil {
			var ue usageError
			switch {
			case errors.Is(err, flag.ErrHelp):
			case errors.As(err, &ue):
				if ue.msg == "" {
					t.Fatalf("parseServe(%q): an empty message", args)
				}
				// run prints it on one line.
				if code, _, out := runCaptured(args); code != 2 || strings.Count(out, "\n") != 1 {
					t.Fatalf("phonehome %q: exit %d, stderr %q; want exit 2 and one line", args, code, out)
				}
			default:
				t.Fatalf("parseServe(%q): %v is not a usage error", args, err)
			}
			return
		}
		switch {
		case cfg.AnswerRate < 0 || cfg.AnswerRate > 1 || cfg.AnswerRate != cfg.AnswerRate:
			t.Fatalf("accepted -answer-rate %v", cfg.AnswerRate)
		case cfg.Poll <= 0:
			t.Fatalf("accepted -poll %v", cfg.Poll)
		case cfg.Grace < 0:
			t.Fatalf("accepted -grace %v", cfg.Grace)
		case cfg.PetTick < time.Millisecond:
			t.Fatalf("accepted -pet-tick %v", cfg.PetTick)
		case cfg.Backoff == nil:
			t.Fatal("no backoff")
		}
		if _, _, err := net.SplitHostPort(cfg.Addr); err != nil {
			t.Fatalf("accepted -addr %q: %v", cfg.Addr, err)
		}
		if d := cfg.Backoff(1); d < 0 {
			t.Fatalf("backoff %v", d)
		}
		// Round trip: the Config written back as flags reads the same.
		back := []string{
			"-addr", cfg.Addr, "-db", cfg.DB,
			"-answer-rate", strconv.FormatFloat(cfg.AnswerRate, 'g', -1, 64),
			"-poll", cfg.Poll.String(), "-grace", cfg.Grace.String(),
			"-pet-tick", cfg.PetTick.String(),
			"-log-level", cfg.LogLevel.String(),
		}
		again, err := parseServe(back, &stderr)
		if err != nil {
			t.Fatalf("the accepted config %+v, written as %q, is refused: %v", cfg, back, err)
		}
		if again.Addr != cfg.Addr || again.DB != cfg.DB || again.AnswerRate != cfg.AnswerRate || again.Poll != cfg.Poll ||
			again.Grace != cfg.Grace || again.PetTick != cfg.PetTick || again.LogLevel != cfg.LogLevel {
			t.Fatalf("round trip: %+v became %+v", cfg, again)
		}
	})
}

func runCaptured(args []string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := run(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// FuzzDispatch runs any command line but serve (which FuzzParseServe
// covers) against a database in a temp folder: the exit status is 0, 1 or
// 2, and a failure is one line on stderr. Seeding more than a few thousand
// rows is skipped, to keep each input quick.
func FuzzDispatch(f *testing.F) {
	for _, s := range []string{
		"version", "version\x00-x", "help", "launch", "migrate", "migrate\x00-force\x001", "migrate\x00-force\x00-5",
		"migrate\x00-force\x0099999999999", "seed", "seed\x00-ets\x005", "seed\x00-ets\x00-1", "seed\x00-pets\x003\x00-pet-tick\x001ms",
		"seed\x00-pet-tick\x000s", "seed\x00-ets=abc", "seed\x00stray", "reset", "reset\x00-h", "migrate\x00--force=2",
		"seed\x00-ets\x000x10", "", "-h",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		args := fuzzArgs(in)
		cmd := "serve"
		if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
			cmd = args[0]
		}
		switch cmd {
		case "serve":
			return // it would serve; FuzzParseServe checks its flags
		case "migrate", "seed", "reset":
			if seedsTooMuch(args) {
				t.Skip("seeds too many rows for a fuzz input")
			}
			// The last -db wins: every database goes to the temp folder.
			args = append(args, "-db", filepath.Join(t.TempDir(), "fuzz.db"))
		}
		code, _, stderr := runCaptured(args)
		switch code {
		case 0:
		case 1, 2:
			if strings.Count(stderr, "\n") != 1 || !strings.HasPrefix(stderr, "phonehome: ") {
				t.Fatalf("phonehome %q: exit %d with stderr %q, want one line", args, code, stderr)
			}
			if strings.Contains(stderr, "goroutine ") || strings.Contains(stderr, "panic") {
				t.Fatalf("phonehome %q: %q", args, stderr)
			}
		default:
			t.Fatalf("phonehome %q: exit %d", args, code)
		}
	})
}

// seedsTooMuch reports a -ets or -pets of more than 2,000 in any spelling
// the flag package accepts.
func seedsTooMuch(args []string) bool {
	for i, a := range args {
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if name != "ets" && name != "pets" {
			continue
		}
		if !hasValue {
			if i+1 >= len(args) {
				continue
			}
			value = args[i+1]
		}
		if n, err := strconv.ParseInt(value, 0, 64); err == nil && n > 2000 {
			return true
		}
	}
	return false
}
