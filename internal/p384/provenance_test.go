package p384

import (
	"bytes"
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/printer"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The copied files are compared with the module version PROVENANCE names,
// in the module cache, after the changes PROVENANCE lists. The files are
// read as text, so the test runs on every architecture and with purego.

// source returns the folder of circl's ecc/p384 at the version PROVENANCE
// records, which must be the version go.mod requires.
func source(t *testing.T) string {
	t.Helper()
	prov, err := os.ReadFile("PROVENANCE")
	if err != nil {
		t.Fatal(err)
	}
	field := func(name string) string {
		m := regexp.MustCompile(`(?m)^` + name + `:\s+(\S+)$`).FindSubmatch(prov)
		if m == nil {
			t.Fatalf("PROVENANCE: no %s: line", name)
		}
		return string(m[1])
	}
	module, version, from := field("module"), field("version"), field("from")
	out, err := exec.Command("go", "list", "-m", "-json", module).Output()
	if err != nil {
		t.Fatalf("go list -m %s: %v", module, err)
	}
	var m struct{ Version, Dir string }
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatal(err)
	}
	if m.Version != version {
		t.Fatalf("go.mod requires %s %s but the copy is recorded from %s: compare the copy with %s, then update PROVENANCE", module, m.Version, version, m.Version)
	}
	if m.Dir == "" {
		t.Fatalf("%s@%s is not in the module cache: go mod download %s", module, version, module)
	}
	return filepath.Join(m.Dir, from)
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// replaceOnce replaces old, which must occur once in s.
func replaceOnce(t *testing.T, s, old, new string) string {
	t.Helper()
	if n := strings.Count(s, old); n != 1 {
		t.Fatalf("the source has %q %d times, want once", old, n)
	}
	return strings.Replace(s, old, new, 1)
}

const (
	circlBuild = "//go:build (!purego && arm64) || (!purego && amd64)\n// +build !purego,arm64 !purego,amd64\n"
	ourBuild   = "//go:build amd64 && !purego\n"
)

func TestProvenanceVerbatim(t *testing.T) {
	src := source(t)
	cmodule := filepath.Join(src, "..", "..")
	same := func(ours, theirs string) {
		t.Helper()
		if got := read(t, ours); got != theirs {
			t.Errorf("%s differs from its source beyond the changes PROVENANCE lists", ours)
		}
	}
	same("LICENSE", read(t, filepath.Join(cmodule, "LICENSE")))
	same("LICENSE-ecc-p384", read(t, filepath.Join(src, "LICENSE")))
	same("tableBase.go", replaceOnce(t, read(t, filepath.Join(src, "tableBase.go")), circlBuild, ourBuild))

	asm := read(t, filepath.Join(src, "arith_amd64.s"))
	asm = replaceOnce(t, asm, "// +build amd64,!purego\n", ourBuild)
	// fp384Cmov is the last function of the file.
	i := strings.Index(asm, "\nTEXT ·fp384Cmov(SB)")
	if i < 0 || strings.Contains(asm[i+1:], "\nTEXT ") {
		t.Fatal("arith_amd64.s: fp384Cmov is not the source's last function")
	}
	same("arith_amd64.s", strings.TrimRight(asm[:i], "\n")+"\n")
}

// decls parses a Go file and returns its top-level declarations by name
// (a method as Type.name), printed without comments.
func decls(t *testing.T, path string) (map[string]string, map[string]*ast.FuncDecl) {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, path, nil, 0) // no comments
	if err != nil {
		t.Fatal(err)
	}
	text := func(n any) string {
		var b bytes.Buffer
		if err := printer.Fprint(&b, fset, n); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	out, funcs := map[string]string{}, map[string]*ast.FuncDecl{}
	for _, d := range f.Decls {
		switch d := d.(type) {
		case *ast.FuncDecl:
			name := d.Name.Name
			if d.Recv != nil {
				recv := d.Recv.List[0].Type
				if s, ok := recv.(*ast.StarExpr); ok {
					recv = s.X
				}
				name = recv.(*ast.Ident).Name + "." + name
			}
			out[name] = text(d)
			funcs[name] = d
		case *ast.GenDecl:
			for _, s := range d.Specs {
				switch s := s.(type) {
				case *ast.TypeSpec:
					out[s.Name.Name] = text(s)
				case *ast.ValueSpec:
					for i, n := range s.Names {
						out[n.Name] = text(s.Values[i])
					}
				}
			}
		}
	}
	return out, funcs
}

func TestProvenanceArith(t *testing.T) {
	src := source(t)
	ours, _ := decls(t, "arith.go")
	theirs, _ := decls(t, filepath.Join(src, "arith.go"))
	amd64, _ := decls(t, filepath.Join(src, "arith_amd64.go"))
	theirs["hasBMI2"] = amd64["hasBMI2"]
	for _, name := range []string{"fp384", "sizeFp", "p", "pp", "r2", "hasBMI2", "montEncode", "fp384Sqr", "fp384Neg", "fp384Add", "fp384Sub", "fp384Mul"} {
		if ours[name] == "" || ours[name] != theirs[name] {
			t.Errorf("arith.go: %s differs from circl's:\n%s\ncircl:\n%s", name, ours[name], theirs[name])
		}
	}
	for name := range ours {
		if theirs[name] == "" {
			t.Errorf("arith.go: %s is not circl's: list it in PROVENANCE and here", name)
		}
	}
}

// fieldOps returns the field operations of a function in order, each as
// its call with & and * dropped from the operands (circl's temporaries are
// pointers, ours values), leaving out the reductions by oneM that mixadd
// adds.
func fieldOps(fn *ast.FuncDecl) []string {
	var ops []string
	ast.Inspect(fn.Body, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok {
			return true
		}
		id, ok := call.Fun.(*ast.Ident)
		if !ok || !strings.HasPrefix(id.Name, "fp384") && id.Name != "montEncode" {
			return true
		}
		var args []string
		for _, a := range call.Args {
			for {
				if u, ok := a.(*ast.UnaryExpr); ok && u.Op == token.AND {
					a = u.X
				} else if s, ok := a.(*ast.StarExpr); ok {
					a = s.X
				} else {
					break
				}
			}
			var b bytes.Buffer
			printer.Fprint(&b, token.NewFileSet(), a)
			args = append(args, b.String())
		}
		for _, a := range args {
			if a == "oneM" {
				return true
			}
		}
		ops = append(ops, id.Name+"("+strings.Join(args, ", ")+")")
		return true
	})
	return ops
}

func TestProvenancePoint(t *testing.T) {
	src := source(t)
	ours, ourFuncs := decls(t, "point.go")
	theirs, theirFuncs := decls(t, filepath.Join(src, "point.go"))
	// As they are (jacobianPoint.neg is circl's p2Point.neg).
	for name, from := range map[string]string{
		"affinePoint": "affinePoint", "affinePoint.isZero": "affinePoint.isZero", "affinePoint.neg": "affinePoint.neg",
		"jacobianPoint.isZero": "jacobianPoint.isZero",
	} {
		if ours[name] == "" || ours[name] != theirs[from] {
			t.Errorf("point.go: %s differs from circl's %s:\n%s\ncircl:\n%s", name, from, ours[name], theirs[from])
		}
	}
	if ours["jacobianPoint.neg"] != strings.Replace(theirs["p2Point.neg"], "*p2Point", "*jacobianPoint", 1) {
		t.Errorf("point.go: jacobianPoint.neg differs from circl's p2Point.neg")
	}
	// The same field operations in the same order.
	for _, name := range []string{"affinePoint.toJacobian", "jacobianPoint.add", "jacobianPoint.mixadd", "jacobianPoint.double"} {
		if ourFuncs[name] == nil || theirFuncs[name] == nil {
			t.Fatalf("point.go: %s missing", name)
		}
		got, want := fieldOps(ourFuncs[name]), fieldOps(theirFuncs[name])
		if len(want) == 0 || strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("point.go: the field operations of %s differ from circl's:\n%s\ncircl:\n%s", name, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
	for name := range ours {
		switch name {
		case "jacobianPoint", "jacobianPoint.neg":
			continue // circl's jacobianPoint embeds p2Point, which has neg
		}
		if theirs[name] == "" {
			t.Errorf("point.go: %s is not circl's: list it in PROVENANCE and here", name)
		}
	}
}
