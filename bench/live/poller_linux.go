//go:build linux

package live

import (
	"bytes"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// conn is one event-stream client: a raw socket read by the poller. It holds
// no goroutine and no buffer of its own while idle, so ten thousand of them
// cost the benchmark process almost nothing and the memory measured is the
// server's.
type conn struct {
	fd     int
	index  int         // the client's number in its scenario
	carry  []byte      // an event split across reads
	head   bool        // the response head has been read
	ended  atomic.Bool // the server closed the stream
	port   int         // where it was dialled, to resume
	path   string
	lastID int64        // the last event id received (poller's thread)
	cuts   atomic.Int64 // streams the server ended that were resumed
	rows   atomic.Int64 // row events received
	named  atomic.Int64 // named events (counts, resync) received
	resync atomic.Int64
}

// event is what a scenario sees of one received event.
type event struct {
	c    *conn
	id   int64
	name string
	row  int64 // the row id in the data, 0 if none
	try  int   // the attempt number in the row, 0 if "-"
	data []byte
	at   time.Time
}

// poller reads many client sockets with epoll on one locked thread, so its
// CPU time can be told apart from the server's.
type poller struct {
	epfd    int
	mu      sync.Mutex
	conns   map[int]*conn
	handle  func(ev *event)
	stop    chan struct{}
	done    chan struct{}
	cpu     time.Duration // the poller thread's CPU time, when stopped
	readBuf []byte
	once    sync.Once
	// resume makes a client whose stream the server ends reconnect at
	// once with Last-Event-ID, as a browser's EventSource does.
	resume bool
}

func newPoller(handle func(*event)) (*poller, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll: %w", err)
	}
	p := &poller{epfd: epfd, conns: map[int]*conn{}, handle: handle,
		stop: make(chan struct{}), done: make(chan struct{}), readBuf: make([]byte, 1<<20)}
	go p.loop()
	return p, nil
}

// dial connects to 127.0.0.1:port, sends GET path and adds the socket to
// the poller.
func (p *poller) dial(port int, path string, index int) (*conn, error) {
	c := &conn{index: index, port: port, path: path}
	if err := p.connect(c, ""); err != nil {
		return nil, err
	}
	return c, nil
}

// connect opens c's socket, sends its request (with a Last-Event-ID header
// when lastID is not empty) and adds the socket to the poller.
func (p *poller) connect(c *conn, lastID string) error {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	if err := syscall.Connect(fd, &syscall.SockaddrInet4{Port: c.port, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		syscall.Close(fd)
		return fmt.Errorf("connect: %w", err)
	}
	req := "GET " + c.path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n"
	if lastID != "" {
		req += "Last-Event-ID: " + lastID + "\r\n"
	}
	if _, err := syscall.Write(fd, []byte(req+"\r\n")); err != nil {
		syscall.Close(fd)
		return fmt.Errorf("write request: %w", err)
	}
	if err := syscall.SetNonblock(fd, true); err != nil {
		syscall.Close(fd)
		return err
	}
	c.fd, c.head, c.carry = fd, false, nil
	p.mu.Lock()
	p.conns[fd] = c
	p.mu.Unlock()
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP, Fd: int32(fd)}
	if err := syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
		syscall.Close(fd)
		return fmt.Errorf("epoll add: %w", err)
	}
	return nil
}

// close stops the poller and closes every socket.
func (p *poller) close() {
	p.once.Do(p.shut)
}

func (p *poller) shut() {
	close(p.stop)
	<-p.done
	p.mu.Lock()
	for fd := range p.conns {
		syscall.Close(fd)
	}
	p.conns = map[int]*conn{}
	p.mu.Unlock()
	syscall.Close(p.epfd)
}

func threadCPU() time.Duration {
	var ru syscall.Rusage
	const rusageThread = 1
	if err := syscall.Getrusage(rusageThread, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func (p *poller) loop() {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	defer close(p.done)
	start := threadCPU()
	defer func() { p.cpu = threadCPU() - start }()
	events := make([]syscall.EpollEvent, 256)
	for {
		select {
		case <-p.stop:
			return
		default:
		}
		n, err := syscall.EpollWait(p.epfd, events, 50)
		if err != nil && !errors.Is(err, syscall.EINTR) {
			return
		}
		now := time.Now()
		for i := range n {
			fd := int(events[i].Fd)
			p.mu.Lock()
			c := p.conns[fd]
			p.mu.Unlock()
			if c != nil {
				p.read(c, now)
			}
		}
	}
}

func (p *poller) read(c *conn, now time.Time) {
	for {
		n, err := syscall.Read(c.fd, p.readBuf)
		if n > 0 {
			p.feed(c, p.readBuf[:n], now)
		}
		if err == syscall.EAGAIN || err == syscall.EINTR {
			return
		}
		if n == 0 || err != nil {
			_ = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_DEL, c.fd, nil)
			if p.resume && c.lastID > 0 && p.redial(c) {
				return
			}
			c.ended.Store(true)
			return
		}
	}
}

// redial resumes c's stream after the server ended it: a new connection
// from the last id received, as EventSource does (at once: the benchmark
// wants the events, not a pause).
func (p *poller) redial(c *conn) bool {
	select {
	case <-p.stop:
		return false
	default:
	}
	p.mu.Lock()
	delete(p.conns, c.fd)
	p.mu.Unlock()
	syscall.Close(c.fd)
	if err := p.connect(c, strconv.FormatInt(c.lastID, 10)); err != nil {
		return false
	}
	c.cuts.Add(1)
	return true
}

var (
	blankLine = []byte("\n\n")
	rowMark   = []byte(`id="extraterrestrial-`)
	numMark   = []byte(`<td class="num">`)
)

// feed parses what arrived on a connection: complete events go to the
// handler; a partial one waits in carry.
func (p *poller) feed(c *conn, b []byte, now time.Time) {
	if len(c.carry) > 0 {
		c.carry = append(c.carry, b...)
		b = c.carry
	}
	if !c.head {
		i := bytes.Index(b, []byte("\r\n\r\n"))
		if i < 0 {
			c.carry = append(c.carry[:0:0], b...)
			return
		}
		c.head = true
		b = b[i+4:]
	}
	for {
		i := bytes.Index(b, blankLine)
		if i < 0 {
			break
		}
		p.event(c, b[:i+1], now)
		b = b[i+2:]
	}
	if len(b) == 0 {
		c.carry = nil
		return
	}
	c.carry = append(make([]byte, 0, len(b)+4096), b...)
}

// event parses one event block (without its blank line). The hub writes
// the id first, then the name if any, then the data lines; the row id and
// attempt are found in the raw block, without copying the data.
func (p *poller) event(c *conn, block []byte, now time.Time) {
	ev := event{c: c, at: now, data: block}
	rest := block
	for len(rest) > 0 {
		line, after, _ := bytes.Cut(rest, []byte("\n"))
		switch {
		case bytes.HasPrefix(line, []byte("id: ")):
			ev.id, _ = strconv.ParseInt(string(line[4:]), 10, 64)
		case bytes.HasPrefix(line, []byte("event: ")):
			ev.name = string(line[7:])
		case bytes.HasPrefix(line, []byte(":")):
		default:
			rest = nil // the data lines
			continue
		}
		rest = after
	}
	if ev.id == 0 {
		return // a comment (heartbeat)
	}
	c.lastID = ev.id
	if ev.name != "" {
		c.named.Add(1)
		if ev.name == "resync" {
			c.resync.Add(1)
		}
	} else {
		c.rows.Add(1)
		if i := bytes.Index(block, rowMark); i >= 0 {
			ev.row = leadingInt(block[i+len(rowMark):])
		}
		if i := bytes.Index(block, numMark); i >= 0 {
			ev.try = int(leadingInt(block[i+len(numMark):]))
		}
	}
	if p.handle != nil {
		p.handle(&ev)
	}
}

// dataOf joins the data lines of an event block, as EventSource does.
func dataOf(block []byte) string {
	var out []byte
	for len(block) > 0 {
		line, rest, _ := bytes.Cut(block, []byte("\n"))
		block = rest
		if d, ok := bytes.CutPrefix(line, []byte("data: ")); ok {
			if out != nil {
				out = append(out, '\n')
			}
			out = append(out, d...)
		}
	}
	return string(out)
}

func leadingInt(b []byte) int64 {
	var n int64
	for _, ch := range b {
		if ch < '0' || ch > '9' {
			break
		}
		n = n*10 + int64(ch-'0')
	}
	return n
}

// raiseFiles lifts the soft open-file limit to want, or to the hard limit
// when want is above it and this process may not raise that.
func raiseFiles(want uint64) (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, err
	}
	if lim.Cur >= want {
		return lim.Cur, nil
	}
	try := lim
	try.Cur, try.Max = want, max(lim.Max, want)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &try); err == nil {
		return want, nil
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, err
	}
	if lim.Cur < want {
		return lim.Cur, fmt.Errorf("open-file limit is %d, below the %d wanted", lim.Cur, want)
	}
	return lim.Cur, nil
}

// processCPU is the CPU time of the whole process.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
