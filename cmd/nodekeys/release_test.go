package main

import (
	"debug/elf"
	"debug/macho"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// scripts/release.sh builds a binary per target that runs (the host's)
// and is of its system and architecture (the others), with checksums that
// sha256sum accepts. Building takes minutes on a busy two-core machine,
// so it runs in the long form only (NODEKEYS_LONG=1, as CI sets it).
func TestReleaseScript(t *testing.T) {
	if os.Getenv("NODEKEYS_RELEASE") != "1" {
		// Four -trimpath builds share nothing with the build cache: minutes
		// of CPU, which CI spends in a step of its own.
		t.Skip("builds release binaries for four platforms: NODEKEYS_RELEASE=1")
	}
	t.Parallel()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	require.NoError(t, err)
	targets := "linux/amd64 linux/arm64 darwin/amd64 darwin/arm64"
	dist := t.TempDir()
	cmd := exec.Command("bash", filepath.Join(root, "scripts", "release.sh"), "v9.8.7-test")
	cmd.Env = append(os.Environ(), "DIST="+dist, "TARGETS="+targets)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	cmd = exec.Command("sha256sum", "-c", "SHA256SUMS")
	cmd.Dir = dist
	out, err = cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	for _, tg := range strings.Fields(targets) {
		goos, arch, _ := strings.Cut(tg, "/")
		bin := filepath.Join(dist, "nodekeys-v9.8.7-test-"+goos+"-"+arch)
		assert.Contains(t, string(out), filepath.Base(bin)+": OK")
		switch goos {
		case "linux":
			f, err := elf.Open(bin)
			require.NoError(t, err)
			want := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}[arch]
			assert.Equal(t, want, f.Machine, bin)
			f.Close()
		case "darwin":
			f, err := macho.Open(bin)
			require.NoError(t, err)
			want := map[string]macho.Cpu{"amd64": macho.CpuAmd64, "arm64": macho.CpuArm64}[arch]
			assert.Equal(t, want, f.Cpu, bin)
			f.Close()
		}
		if tg == "linux/amd64" {
			v, err := exec.Command(bin, "version").Output()
			require.NoError(t, err)
			assert.Equal(t, "nodekeys v9.8.7-test\n", string(v))
		}
	}
	// -trimpath: no path of the build machine in the binary.
	b, err := os.ReadFile(filepath.Join(dist, "nodekeys-v9.8.7-test-linux-amd64"))
	require.NoError(t, err)
	assert.NotContains(t, string(b), root)
}
