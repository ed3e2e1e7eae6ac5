//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package cluster

import (
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
)

func lockFile(lockPath, dbPath string) (func() error, error) {
	f, err := os.OpenFile(lockPath, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", lockPath, err)
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if errors.Is(err, syscall.EWOULDBLOCK) {
		holder, _ := io.ReadAll(io.LimitReader(f, 512))
		f.Close()
		return nil, lockedMessage(dbPath, string(holder))
	}
	if err != nil {
		f.Close()
		if errors.Is(err, syscall.ENOLCK) || errors.Is(err, syscall.ENOTSUP) || errors.Is(err, syscall.EOPNOTSUPP) {
			return nil, fmt.Errorf("lock %s: the file system does not support locks (%v): keep the SQLite database on a local disk", lockPath, err)
		}
		return nil, fmt.Errorf("lock %s: %w", lockPath, err)
	}
	// The holder's line is written only once the lock is ours, so a
	// refused process never overwrites it.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(holderText()), 0)
	}
	return func() error {
		// Closing the only descriptor drops the flock.
		return f.Close()
	}, nil
}
