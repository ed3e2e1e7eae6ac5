package live

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// childEnv makes a process that imports this package a client process: the
// ten-thousand-client scenario runs its clients in a child so that both
// ends of every connection do not share one process's open-file limit, and
// the server's memory and CPU are measured alone.
const childEnv = "PHONEHOME_LIVEBENCH_CLIENTS"

func init() {
	if os.Getenv(childEnv) == "1" {
		os.Exit(childMain(os.Stdin, os.Stdout))
	}
}

// childReport is what the client process tells the benchmark at the end.
type childReport struct {
	Rows, Counts, Resyncs int64
	Ended                 int
	PublishToClient       Latency
	CPU                   time.Duration
	Err                   string
}

// childMain reads "port N", one path per line, and "go"; connects every
// path; prints "connected"; waits for "stop"; prints its childReport as
// JSON. PublishToClient is measured from the event id, which the hub takes from
// the clock (in microseconds) when it publishes.
func childMain(in io.Reader, out io.Writer) int {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var port int
	var paths []string
	for sc.Scan() {
		line := sc.Text()
		if p, ok := strings.CutPrefix(line, "port "); ok {
			port, _ = strconv.Atoi(p)
			continue
		}
		if line == "go" {
			break
		}
		paths = append(paths, line)
	}
	_, _ = raiseFiles(uint64(len(paths) + 1024))
	var lat histogram
	var rep childReport
	p, err := newPoller(func(ev *event) {
		if ev.name != "" {
			return
		}
		lat.add(ev.at.Sub(time.UnixMicro(ev.id)))
	})
	if err != nil {
		rep.Err = err.Error()
		_ = json.NewEncoder(out).Encode(rep)
		return 1
	}
	conns := make([]*conn, 0, len(paths))
	for i, path := range paths {
		c, err := p.dial(port, path, i)
		if err != nil {
			rep.Err = fmt.Sprintf("client %d: %v", i, err)
			_ = json.NewEncoder(out).Encode(rep)
			return 1
		}
		conns = append(conns, c)
	}
	fmt.Fprintln(out, "connected")
	for sc.Scan() {
		if sc.Text() == "stop" {
			break
		}
	}
	p.close()
	for _, c := range conns {
		rep.Rows += c.rows.Load()
		rep.Counts += c.named.Load() - c.resync.Load()
		rep.Resyncs += c.resync.Load()
		if c.ended.Load() {
			rep.Ended++
		}
	}
	rep.PublishToClient = lat.summary()
	rep.CPU = processCPU()
	_ = json.NewEncoder(out).Encode(rep)
	return 0
}

// clientProcess is a running child of childMain.
type clientProcess struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Reader
}

// startClients starts a client process and has it connect every path.
func startClients(port int, paths []string) (*clientProcess, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), childEnv+"=1")
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	outPipe, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	cp := &clientProcess{cmd: cmd, in: in, out: bufio.NewReader(outPipe)}
	w := bufio.NewWriter(in)
	fmt.Fprintf(w, "port %d\n", port)
	for _, p := range paths {
		fmt.Fprintln(w, p)
	}
	fmt.Fprintln(w, "go")
	if err := w.Flush(); err != nil {
		cp.kill()
		return nil, err
	}
	line, err := cp.out.ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "connected" {
		cp.kill()
		return nil, fmt.Errorf("client process: %q, %v", line, err)
	}
	return cp, nil
}

// stop ends the client process and returns its report.
func (cp *clientProcess) stop() (childReport, error) {
	var rep childReport
	if _, err := fmt.Fprintln(cp.in, "stop"); err != nil {
		cp.kill()
		return rep, err
	}
	line, err := cp.out.ReadString('\n')
	if err != nil {
		cp.kill()
		return rep, err
	}
	cp.in.Close()
	_ = cp.cmd.Wait()
	if err := json.Unmarshal([]byte(line), &rep); err != nil {
		return rep, err
	}
	if rep.Err != "" {
		return rep, fmt.Errorf("client process: %s", rep.Err)
	}
	return rep, nil
}

func (cp *clientProcess) kill() {
	_ = cp.cmd.Process.Kill()
	_ = cp.cmd.Wait()
}
