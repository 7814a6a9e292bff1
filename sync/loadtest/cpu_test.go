package loadtest

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// procCPU is the CPU time (user + system) of this process and of its descendants that are
// still running, by command name: the test process (kiosks and ledgers), mosquitto and the
// PostgreSQL server's processes. A phase's share of each is the difference of two readings;
// on a machine with few cores it says which process the phase waited for.
type procCPU map[string]time.Duration

// clockTick is USER_HZ, the unit of /proc/<pid>/stat's times (100 on Linux everywhere).
const clockTick = 100

func readProcCPU() procCPU {
	self := os.Getpid()
	type proc struct {
		ppid int
		comm string
		cpu  time.Duration
		wait time.Duration
	}
	procs := map[int]proc{}
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", d.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ... utime(14) stime(15): comm may hold spaces, so split
		// after its closing parenthesis.
		s := string(b)
		open, closing := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || closing < open {
			continue
		}
		f := strings.Fields(s[closing+1:])
		if len(f) < 13 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		procs[pid] = proc{ppid: ppid, comm: s[open+1 : closing], cpu: time.Duration(ut+st) * time.Second / clockTick, wait: runDelay(pid)}
	}
	out := procCPU{}
	for pid, p := range procs {
		// Walk up to this process; a process outside the tree is not counted.
		name, q := p.comm, pid
		for q != self && q > 1 {
			q = procs[q].ppid
		}
		if q != self {
			continue
		}
		if pid == self {
			name = "test process"
		}
		out[name] += p.cpu
		out[name+" "+waitSuffix] += p.wait
	}
	return out
}

// waitSuffix names a process group's time runnable but waiting for a core.
const waitSuffix = "(waiting for a core)"

// runDelay is the time pid's threads spent runnable but not running (the second field of
// /proc/<pid>/task/<tid>/schedstat, in nanoseconds); 0 where the kernel does not say.
func runDelay(pid int) time.Duration {
	tasks, _ := os.ReadDir(filepath.Join("/proc", strconv.Itoa(pid), "task"))
	var d time.Duration
	for _, t := range tasks {
		b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "task", t.Name(), "schedstat"))
		if err != nil {
			continue
		}
		f := strings.Fields(string(b))
		if len(f) >= 2 {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			d += time.Duration(n)
		}
	}
	return d
}

// since returns the CPU each process group used after from, largest first.
func (c procCPU) since(from procCPU) string {
	type row struct {
		name string
		d    time.Duration
	}
	var rows []row
	for name, d := range c {
		if d -= from[name]; d > 0 {
			rows = append(rows, row{name, d})
		}
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].d > rows[j].d })
	var parts []string
	for _, r := range rows {
		parts = append(parts, fmt.Sprintf("%s %s", r.name, ms(r.d)))
	}
	if len(parts) == 0 {
		return "none measured"
	}
	return strings.Join(parts, ", ")
}
