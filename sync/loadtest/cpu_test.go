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

// procCPU is, by command name, the CPU time (user + system) of this process and of its
// descendants that are still running (mosquitto, the PostgreSQL server's processes), and how
// long their threads were runnable but waiting for a core. A phase's share is the
// difference of two readings: on a machine with few cores it says which process the phase
// waited for.
type procCPU map[string]cpuTimes

type cpuTimes struct{ cpu, wait time.Duration }

// clockTick is USER_HZ, the unit of /proc/<pid>/stat's times (100 on Linux everywhere).
const clockTick = 100

func readProcCPU() procCPU {
	self := os.Getpid()
	type proc struct {
		ppid int
		comm string
		cpuTimes
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
		procs[pid] = proc{ppid: ppid, comm: s[open+1 : closing],
			cpuTimes: cpuTimes{cpu: time.Duration(ut+st) * time.Second / clockTick, wait: runDelay(pid)}}
	}
	out := procCPU{}
	for pid, p := range procs {
		// Walk up to this process; a process outside the tree is not counted.
		q := pid
		for q != self && q > 1 {
			q = procs[q].ppid
		}
		if q != self {
			continue
		}
		name := p.comm
		if pid == self {
			name = "test process"
		}
		t := out[name]
		t.cpu += p.cpu
		t.wait += p.wait
		out[name] = t
	}
	return out
}

// runDelay is the time pid's threads spent runnable but not running (the second field of
// /proc/<pid>/task/<tid>/schedstat, in nanoseconds); 0 where the kernel does not say.
func runDelay(pid int) time.Duration {
	dir := filepath.Join("/proc", strconv.Itoa(pid), "task")
	tasks, _ := os.ReadDir(dir)
	var d time.Duration
	for _, t := range tasks {
		b, err := os.ReadFile(filepath.Join(dir, t.Name(), "schedstat"))
		if err != nil {
			continue
		}
		if f := strings.Fields(string(b)); len(f) >= 2 {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			d += time.Duration(n)
		}
	}
	return d
}

// total is the CPU all the processes used after from, together.
func (c procCPU) total(from procCPU) time.Duration {
	var d time.Duration
	for name, t := range c {
		d += max(t.cpu-from[name].cpu, 0)
	}
	return d
}

// since describes what each process used after from, the largest first: "mosquitto 1.2s
// (+3.4s waiting for a core)".
func (c procCPU) since(from procCPU) string {
	type row struct {
		name string
		t    cpuTimes
	}
	var rows []row
	for name, t := range c {
		t.cpu -= from[name].cpu
		t.wait -= from[name].wait
		if t.cpu > 0 || t.wait > 0 {
			rows = append(rows, row{name, t})
		}
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].t.cpu > rows[j].t.cpu })
	var parts []string
	for _, r := range rows {
		parts = append(parts, fmt.Sprintf("%s %s (+%s waiting for a core)", r.name, ms(r.t.cpu), ms(r.t.wait)))
	}
	if len(parts) == 0 {
		return "none measured"
	}
	return strings.Join(parts, ", ")
}
