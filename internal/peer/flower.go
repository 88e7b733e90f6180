package peer

import (
	"os"
	"path/filepath"
	"testing"
)

// FlowerDir returns the folder ../shared/peers/flower/setup.sh made (real
// Flower 1.22, 1.25 and 1.27 and their sources): NODEKEYS_FLOWER, else
// .peers/flower at the module root. It skips the test (fails under
// NODEKEYS_REQUIRE_PEERS) when there is none.
func FlowerDir(t testing.TB) string {
	t.Helper()
	Short(t)
	dir := os.Getenv("NODEKEYS_FLOWER")
	if dir == "" {
		wd, err := os.Getwd()
		if err != nil {
			t.Fatal(err)
		}
		for d := wd; ; d = filepath.Dir(d) {
			if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
				dir = filepath.Join(d, ".peers", "flower")
				break
			}
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, "src")); dir == "" || err != nil || !fi.IsDir() {
		missing(t, "Flower's peers (run ../shared/peers/flower/setup.sh .peers/flower, or set NODEKEYS_FLOWER)")
	}
	return dir
}
