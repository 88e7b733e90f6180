package peer

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/nodekeys/nodekeys/internal/syncbuf"
)

var (
	pyPathOnce sync.Once
	pyPath     string

	pyMu     sync.Mutex // one script at a time
	pyServer *pythonServer
	pyErr    error // why the server cannot start; sticky
)

// PythonCommand is the Python 3 interpreter the peer tests run:
// $NODEKEYS_PYTHON, or python3 on the PATH. A python3 that is a version
// manager's shim (pyenv's costs a quarter of a second a start) is resolved
// once to the interpreter it runs.
func PythonCommand() string {
	if p := os.Getenv("NODEKEYS_PYTHON"); p != "" {
		return p
	}
	pyPathOnce.Do(func() {
		pyPath = "python3"
		if out, err := exec.Command("python3", "-c", "import sys; print(sys.executable)").Output(); err == nil {
			if p := strings.TrimSpace(string(out)); p != "" {
				pyPath = p
			}
		}
	})
	return pyPath
}

// Python runs a Python 3 script that may import cryptography, with args
// (sys.argv[1:]) and stdin, and returns its stdout. The test fails if the
// script fails.
//
// A test binary starts one Python process, on the first call, and runs
// every script in it, one at a time, each in a namespace of its own
// (__name__ is "__main__"): starting Python and importing cryptography
// cost more than most scripts. Modules a script imports stay imported.
func Python(t testing.TB, stdin []byte, script string, args ...string) []byte {
	t.Helper()
	out, err := TryPython(t, stdin, script, args...)
	if err != nil {
		t.Fatalf("python script %v: %v\n%s", args, err, out)
	}
	return out
}

// TryPython is Python for a script that may fail: it returns the script's
// stdout, or its stdout and stderr together and an error naming the exit
// status when the script raises or exits non-zero.
func TryPython(t testing.TB, stdin []byte, script string, args ...string) ([]byte, error) {
	t.Helper()
	py := PythonCommand()
	Command(t, py)
	pyMu.Lock()
	defer pyMu.Unlock()
	if pyServer == nil && pyErr == nil {
		pyServer, pyErr = startPython(py)
	}
	if pyErr != nil {
		missing(t, "%s: %v", py, pyErr)
	}
	res, err := pyServer.run(stdin, script, args)
	if err != nil {
		pyErr = err // the process is gone; later tests report it too
		t.Fatalf("python: %v", err)
	}
	if res.Code != 0 {
		return append(res.Stdout, res.Stderr...), fmt.Errorf("exit status %d", res.Code)
	}
	return res.Stdout, nil
}

// pyLoop runs the scripts sent on fd 3 and answers on fd 4, so that
// nothing a script prints can mix with the answers. A script's stdin,
// stdout and stderr are buffers of its own (with .buffer, as the real ones
// have).
const pyLoop = `
import base64, io, json, os, sys, traceback
import cryptography
requests, answers = os.fdopen(3, "rb"), os.fdopen(4, "wb")
answers.write(b"ready\n"); answers.flush()
for line in requests:
    r = json.loads(line)
    out, err = io.BytesIO(), io.BytesIO()
    sys.stdin = io.TextIOWrapper(io.BytesIO(base64.b64decode(r["stdin"])), encoding="utf-8")
    sys.stdout = io.TextIOWrapper(out, encoding="utf-8", write_through=True)
    sys.stderr = io.TextIOWrapper(err, encoding="utf-8", write_through=True)
    sys.argv = ["-c"] + r["args"]
    code = 0
    try:
        exec(compile(r["script"], "<script>", "exec"), {"__name__": "__main__", "__builtins__": __builtins__})
    except SystemExit as e:
        if isinstance(e.code, int):
            code = e.code
        elif e.code is not None:
            print(e.code, file=sys.stderr)
            code = 1
    except BaseException:
        traceback.print_exc()
        code = 1
    sys.stdout.flush(); sys.stderr.flush()
    o, e = out.getvalue(), err.getvalue()  # before the wrappers go, closing their buffers
    sys.stdin, sys.stdout, sys.stderr = sys.__stdin__, sys.__stdout__, sys.__stderr__
    answers.write(json.dumps({"code": code, "stdout": base64.b64encode(o).decode(),
                              "stderr": base64.b64encode(e).decode()}).encode() + b"\n")
    answers.flush()
`

type pythonServer struct {
	cmd      *exec.Cmd
	requests io.WriteCloser
	answers  *bufio.Reader
	stderr   *syncbuf.Buffer
}

type pyAnswer struct {
	Code           int
	Stdout, Stderr []byte
}

func startPython(py string) (*pythonServer, error) {
	reqR, reqW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	ansR, ansW, err := os.Pipe()
	if err != nil {
		reqR.Close()
		reqW.Close()
		return nil, err
	}
	s := &pythonServer{requests: reqW, answers: bufio.NewReader(ansR), stderr: &syncbuf.Buffer{}}
	s.cmd = exec.Command(py, "-c", pyLoop)
	s.cmd.ExtraFiles = []*os.File{reqR, ansW} // fds 3 and 4
	s.cmd.Stderr = s.stderr
	err = s.cmd.Start()
	reqR.Close()
	ansW.Close()
	if err != nil {
		reqW.Close()
		return nil, err
	}
	// When the test binary exits, the pipe closes and the loop ends.
	if line, err := s.answers.ReadString('\n'); err != nil || line != "ready\n" {
		s.cmd.Wait()
		if strings.Contains(s.stderr.String(), "No module named 'cryptography'") {
			return nil, errors.New("cannot import cryptography")
		}
		return nil, fmt.Errorf("did not start: %v %s", err, s.stderr.String())
	}
	return s, nil
}

func (s *pythonServer) run(stdin []byte, script string, args []string) (*pyAnswer, error) {
	if args == nil {
		args = []string{}
	}
	if stdin == nil {
		stdin = []byte{}
	}
	req, err := json.Marshal(map[string]any{"script": script, "args": args, "stdin": stdin})
	if err != nil {
		return nil, err
	}
	if _, err := s.requests.Write(append(req, '\n')); err != nil {
		return nil, fmt.Errorf("the Python process is gone: %v %s", err, s.stderr.String())
	}
	line, err := s.answers.ReadBytes('\n')
	if err != nil {
		return nil, fmt.Errorf("the Python process is gone: %v %s", err, s.stderr.String())
	}
	var a pyAnswer
	if err := json.Unmarshal(line, &a); err != nil {
		return nil, fmt.Errorf("an answer that does not parse: %v", err)
	}
	return &a, nil
}
