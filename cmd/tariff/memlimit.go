package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path"
	"strconv"
	"strings"
)

// containerShare is the part of a container's memory limit that tariff
// gives its Go heap when memory_limit is not set: the rest is for what
// the Go runtime does not count (stacks, Badger's memory-mapped tables,
// the kernel's buffers charged to the container).
const containerShare = 0.85

// memoryLimit returns the soft heap limit to set, in bytes (0: none), and
// where it comes from, for the log. configured is memory_limit (nil when
// the configuration does not set it); without it the limit is
// containerShare of the memory limit of the control group tariff runs in,
// when it has one, else none: a fixed default would either waste a large
// machine's memory or, on a small one, not be the container's.
func memoryLimit(configured *int64, readFile func(string) ([]byte, error)) (int64, string) {
	if configured != nil {
		if *configured == 0 {
			return 0, "memory_limit 0: none"
		}
		return *configured, "memory_limit"
	}
	limit, where, ok := cgroupMemoryLimit(readFile)
	if !ok {
		return 0, "no memory_limit and no container memory limit: none"
	}
	v := int64(float64(limit) * containerShare)
	if v < 64<<20 {
		v = 64 << 20
	}
	return v, fmt.Sprintf("%.0f%% of the container's %d MiB (%s)", 100*containerShare, limit>>20, where)
}

// cgroupMemoryLimit finds the memory limit of the process's control
// group: cgroup v2's memory.max, else v1's memory.limit_in_bytes, at the
// group's path under /sys/fs/cgroup or at the mount's root (inside a
// container the group is usually the root of its namespace). ok is false
// when there is none or it is unlimited.
func cgroupMemoryLimit(readFile func(string) ([]byte, error)) (limit int64, where string, ok bool) {
	self, _ := readFile("/proc/self/cgroup")
	var v1, v2 string
	sc := bufio.NewScanner(bytes.NewReader(self))
	for sc.Scan() {
		// hierarchy-ID:controller-list:cgroup-path
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		switch {
		case parts[0] == "0" && parts[1] == "":
			v2 = parts[2]
		case containsController(parts[1], "memory"):
			v1 = parts[2]
		}
	}
	var candidates []string
	if v2 != "" {
		candidates = append(candidates, path.Join("/sys/fs/cgroup", v2, "memory.max"))
	}
	candidates = append(candidates, "/sys/fs/cgroup/memory.max")
	if v1 != "" {
		candidates = append(candidates, path.Join("/sys/fs/cgroup/memory", v1, "memory.limit_in_bytes"))
	}
	candidates = append(candidates, "/sys/fs/cgroup/memory/memory.limit_in_bytes")
	for _, f := range candidates {
		b, err := readFile(f)
		if err != nil {
			continue
		}
		s := strings.TrimSpace(string(b))
		if s == "max" {
			return 0, f, false
		}
		n, err := strconv.ParseInt(s, 10, 64)
		// cgroup v1 writes "unlimited" as a page-aligned number near the
		// largest int64.
		if err != nil || n <= 0 || n >= 1<<62 {
			return 0, f, false
		}
		return n, f, true
	}
	return 0, "", false
}

func containsController(list, c string) bool {
	for _, x := range strings.Split(list, ",") {
		if x == c {
			return true
		}
	}
	return false
}

// readSystemFile is os.ReadFile, the memoryLimit of a real process.
func readSystemFile(name string) ([]byte, error) { return os.ReadFile(name) }
