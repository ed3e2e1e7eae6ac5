// Package mdreport holds what the benchmark commands share to write their
// results: a one-line description of the machine, and the replacement of
// one "## " section of a markdown file, leaving the others as they are.
package mdreport

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
)

// Machine describes this machine in one line: CPU, cores, RAM, Go and
// the kernel.
func Machine() string {
	cpu := "unknown CPU"
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		s := bufio.NewScanner(f)
		for s.Scan() {
			if k, v, ok := strings.Cut(s.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	ram := "unknown RAM"
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			var kb int64
			if _, err := fmt.Sscanf(line, "MemTotal: %d kB", &kb); err == nil {
				ram = fmt.Sprintf("%.1f GiB RAM", float64(kb)/(1<<20))
				break
			}
		}
	}
	kernel := ""
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = ", Linux " + strings.TrimSpace(string(b))
	}
	return fmt.Sprintf("%s, %d cores, %s, %s %s/%s%s", cpu, runtime.NumCPU(), ram, runtime.Version(),
		runtime.GOOS, runtime.GOARCH, kernel)
}

// SplitSection cuts file into what comes before the section under heading,
// the section itself (heading included), and what follows it (from the
// next heading on). A missing section is empty, with before being the
// whole file.
func SplitSection(file, heading string) (before, section, after string) {
	lines := strings.SplitAfter(file, "\n")
	start := -1
	for i, l := range lines {
		if strings.TrimRight(l, "\r\n") == heading {
			start = i
			break
		}
	}
	if start < 0 {
		return file, "", ""
	}
	end := len(lines)
	for i := start + 1; i < len(lines); i++ {
		if strings.HasPrefix(lines[i], "## ") || strings.HasPrefix(lines[i], "# ") {
			end = i
			break
		}
	}
	return strings.Join(lines[:start], ""), strings.Join(lines[start:end], ""), strings.Join(lines[end:], "")
}

// WriteSection replaces the section that starts with heading in the file
// at path with section,
// leaving every other section as it is; it creates the file with a
// one-line header when missing, and appends the section when absent.
func WriteSection(path, heading, section string) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		b = []byte("# Benchmarks\n")
		err = nil
	}
	if err != nil {
		return err
	}
	before, old, after := SplitSection(string(b), heading)
	if old == "" {
		before = strings.TrimRight(before, "\n") + "\n\n"
	}
	if after != "" && !strings.HasSuffix(section, "\n\n") {
		section = strings.TrimRight(section, "\n") + "\n\n"
	}
	out := before + section + after
	if bytes.Equal([]byte(out), b) {
		return nil
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".benchmarks-*.md")
	if err != nil {
		return err
	}
	if _, err := tmp.WriteString(out); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), path)
}
