package supernodes

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/nodekeys/nodekeys/csvlist"
	"github.com/nodekeys/nodekeys/internal/atomicfile"
	"github.com/nodekeys/nodekeys/internal/safefile"
	"github.com/nodekeys/nodekeys/keys"
)

// ReadWant reads the wanted keys: .pub files, an allowlist CSV, and every
// *.pub in a folder; each may be empty. A key named twice counts once.
func ReadWant(pubFiles []string, allowlist, dir string) ([]Want, error) {
	var out []Want
	seen := map[string]bool{}
	add := func(k *keys.PublicKey, file string) {
		if !seen[k.Fingerprint()] {
			seen[k.Fingerprint()] = true
			out = append(out, Want{Key: k, File: file})
		}
	}
	for _, f := range pubFiles {
		k, err := keys.ReadPublicKey(f)
		if err != nil {
			return nil, err
		}
		add(k, f)
	}
	if allowlist != "" {
		l, err := csvlist.ReadFile(allowlist)
		if err != nil {
			return nil, err
		}
		for _, e := range l.Entries {
			add(e.Key, fmt.Sprintf("%s:%d:%d", allowlist, e.Line, e.Column))
		}
	}
	if dir != "" {
		names, err := filepath.Glob(filepath.Join(dir, "*.pub"))
		if err != nil {
			return nil, err
		}
		if len(names) == 0 {
			if _, err := os.Stat(dir); err != nil {
				return nil, err
			}
		}
		sort.Strings(names)
		for _, f := range names {
			if filepath.Base(f) == "server_credentials.pub" {
				continue // the SuperLink's own pair of Flower before 1.15
			}
			k, err := keys.ReadPublicKey(f)
			if err != nil {
				return nil, err
			}
			add(k, f)
		}
	}
	return out, nil
}

// BurnedFile is the file in a key folder that records the keys a SuperLink
// unregistered: Flower never registers them again, so keygen and apply
// warn before anyone reuses one.
const BurnedFile = "unregistered_keys.txt"

// ReadBurned returns the fingerprints recorded in dir's BurnedFile (none if
// it does not exist).
func ReadBurned(dir string) (map[string]bool, error) {
	b, err := safefile.ReadRegular(filepath.Join(dir, BurnedFile), 64<<20)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]bool{}, nil
	}
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fp, _, _ := strings.Cut(line, " ")
		out[fp] = true
	}
	return out, sc.Err()
}

// RecordBurned appends the unregistered nodes' fingerprints to dir's
// BurnedFile, one line each: "SHA256:... node ID unregistered TIME".
func RecordBurned(dir string, nodes []Node, now time.Time) error {
	if len(nodes) == 0 {
		return nil
	}
	path := filepath.Join(dir, BurnedFile)
	old, err := safefile.ReadRegular(path, 64<<20)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if len(old) == 0 {
		old = []byte("# Keys a SuperLink unregistered: Flower never registers them again.\n")
	}
	var b bytes.Buffer
	b.Write(old)
	for _, n := range nodes {
		fmt.Fprintf(&b, "%s node %d unregistered %s\n", n.Fingerprint, n.ID, now.UTC().Format(time.RFC3339))
	}
	return atomicfile.Write(path, b.Bytes(), 0o644, true)
}
