package main

import (
	"errors"
	"io/fs"
	"strings"
	"testing"
)

func fakeFiles(files map[string]string) func(string) ([]byte, error) {
	return func(name string) ([]byte, error) {
		if s, ok := files[name]; ok {
			return []byte(s), nil
		}
		return nil, fs.ErrNotExist
	}
}

func TestMemoryLimit(t *testing.T) {
	mib := int64(1 << 20)
	set := func(v int64) *int64 { return &v }
	for _, c := range []struct {
		name       string
		configured *int64
		files      map[string]string
		want       int64
		where      string
	}{
		{"configured wins over the container", set(300 * mib),
			map[string]string{"/proc/self/cgroup": "0::/\n", "/sys/fs/cgroup/memory.max": "536870912\n"}, 300 * mib, "memory_limit"},
		{"configured 0 is none", set(0),
			map[string]string{"/proc/self/cgroup": "0::/\n", "/sys/fs/cgroup/memory.max": "536870912\n"}, 0, "none"},
		{"cgroup v2 at the root of the namespace", nil,
			map[string]string{"/proc/self/cgroup": "0::/\n", "/sys/fs/cgroup/memory.max": "536870912\n"}, 456340275, "/sys/fs/cgroup/memory.max"},
		{"cgroup v2 nested group", nil,
			map[string]string{"/proc/self/cgroup": "0::/kubepods/pod1/c1\n", "/sys/fs/cgroup/kubepods/pod1/c1/memory.max": "2147483648\n"}, 1825361100, "kubepods/pod1/c1/memory.max"},
		{"cgroup v2 unlimited", nil,
			map[string]string{"/proc/self/cgroup": "0::/\n", "/sys/fs/cgroup/memory.max": "max\n"}, 0, "none"},
		{"cgroup v1 group", nil,
			map[string]string{"/proc/self/cgroup": "5:cpu,cpuacct:/\n4:memory:/docker/abc\n0::/\n", "/sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes": "1073741824\n"}, 912680550, "docker/abc/memory.limit_in_bytes"},
		{"cgroup v1 unlimited", nil,
			map[string]string{"/proc/self/cgroup": "4:memory:/\n", "/sys/fs/cgroup/memory/memory.limit_in_bytes": "9223372036854771712\n"}, 0, "none"},
		{"no cgroup files", nil, map[string]string{}, 0, "none"},
		{"a tiny container still gets 64 MiB", nil,
			map[string]string{"/proc/self/cgroup": "0::/\n", "/sys/fs/cgroup/memory.max": "33554432\n"}, 64 * mib, "memory.max"},
	} {
		got, where := memoryLimit(c.configured, fakeFiles(c.files))
		if got != c.want || !strings.Contains(where, c.where) {
			t.Errorf("%s: %d (%s), want %d (%s)", c.name, got, where, c.want, c.where)
		}
	}
	if _, _, ok := cgroupMemoryLimit(func(string) ([]byte, error) { return nil, errors.New("boom") }); ok {
		t.Error("a limit found with no readable file")
	}
}
