// What the queue benchmark observes: notification files arriving in the
// agent's spool (inotify), and notifyd's CPU time and memory (/proc).

package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// spoolWatch reports the notification files as they appear in one agent
// account's spool directory (agentd renames each into place), with the
// time inotify told of it.
type spoolWatch struct {
	ev chan spoolEvent
}

type spoolEvent struct {
	name string
	t    time.Time
}

func watchSpool(dir string) *spoolWatch {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC)
	must(err)
	_, err = unix.InotifyAddWatch(fd, dir, unix.IN_MOVED_TO|unix.IN_CREATE)
	must(err)
	w := &spoolWatch{ev: make(chan spoolEvent, 1<<16)}
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, err := unix.Read(fd, buf)
			t := time.Now()
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				log("inotify: %v", err)
				os.Exit(111)
			}
			for off := 0; off+unix.SizeofInotifyEvent <= n; {
				e := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
				name := buf[off+unix.SizeofInotifyEvent : off+unix.SizeofInotifyEvent+int(e.Len)]
				w.ev <- spoolEvent{string(bytes.TrimRight(name, "\x00")), t}
				off += unix.SizeofInotifyEvent + int(e.Len)
			}
		}
	}()
	return w
}

// wait returns when the file name appeared, or false after limit.
func (w *spoolWatch) wait(name string, limit time.Duration) (time.Time, bool) {
	timer := time.NewTimer(limit)
	defer timer.Stop()
	for {
		select {
		case e := <-w.ev:
			if e.name == name {
				return e.t, true
			}
		case <-timer.C:
			return time.Time{}, false
		}
	}
}

func (w *spoolWatch) drain() {
	for {
		select {
		case <-w.ev:
		default:
			return
		}
	}
}

// procCPU is a process's user+system CPU time so far.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	must(err)
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / 100 // USER_HZ
}

// settle waits until a process has used no CPU for half a second: at
// start notifyd also cleans the store (it reads every entry of rcpt/,
// which here holds the links of every queued message, hidden or not),
// and that once-an-hour work is not a new message's cost.
func settle(pid int) {
	for start := time.Now(); time.Since(start) < time.Minute; {
		c := procCPU(pid)
		time.Sleep(500 * time.Millisecond)
		if procCPU(pid) == c {
			return
		}
	}
}

// procMem is a process's VmRSS and VmHWM in bytes.
func procMem(pid int) (rss, hwm int64) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	must(err)
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		fs := strings.Fields(s.Text())
		if len(fs) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(fs[1], 10, 64)
		switch fs[0] {
		case "VmRSS:":
			rss = kb << 10
		case "VmHWM:":
			hwm = kb << 10
		}
	}
	return rss, hwm
}
