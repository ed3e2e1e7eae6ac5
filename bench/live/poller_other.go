//go:build !linux

package live

import (
	"errors"
	"time"
)

var errLinuxOnly = errors.New("the live benchmark's clients use epoll: run it on Linux")

type conn struct{ index int }

type event struct {
	c    *conn
	id   int64
	name string
	row  int64
	try  int
	data []byte
	at   time.Time
}

type poller struct{ cpu time.Duration }

func newPoller(func(*event)) (*poller, error)          { return nil, errLinuxOnly }
func (p *poller) dial(int, string, int) (*conn, error) { return nil, errLinuxOnly }
func (p *poller) close()                               {}
func dataOf([]byte) string                             { return "" }
func leadingInt([]byte) int64                          { return 0 }
func raiseFiles(uint64) (uint64, error)                { return 0, errLinuxOnly }
func processCPU() time.Duration                        { return 0 }
