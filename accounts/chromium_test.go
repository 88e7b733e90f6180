package accounts

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/websocket"

	"github.com/nodekeys/nodekeys/internal/peer"
)

// cdp is a minimal Chrome DevTools Protocol client: enough to load a
// page, run a line of script in it, and wait for the next page load.
type cdp struct {
	ws      *websocket.Conn
	mu      sync.Mutex
	id      int
	waiting map[int]chan json.RawMessage
	events  chan string // methods of the events seen
	session string
}

func dialCDP(t *testing.T, url string) *cdp {
	t.Helper()
	ws, err := websocket.Dial(url, "", "http://127.0.0.1")
	require.NoError(t, err)
	c := &cdp{ws: ws, waiting: map[int]chan json.RawMessage{}, events: make(chan string, 64)}
	go func() {
		for {
			var msg struct {
				ID     int             `json:"id"`
				Method string          `json:"method"`
				Result json.RawMessage `json:"result"`
				Error  json.RawMessage `json:"error"`
			}
			if err := websocket.JSON.Receive(ws, &msg); err != nil {
				close(c.events)
				return
			}
			if msg.ID != 0 {
				c.mu.Lock()
				ch := c.waiting[msg.ID]
				c.mu.Unlock()
				if msg.Error != nil {
					msg.Result = msg.Error
				}
				ch <- msg.Result
			} else {
				select {
				case c.events <- msg.Method:
				default:
				}
			}
		}
	}()
	t.Cleanup(func() { ws.Close() })
	return c
}

// call sends a command and returns its result.
func (c *cdp) call(t *testing.T, method string, params any) json.RawMessage {
	t.Helper()
	c.mu.Lock()
	c.id++
	id, ch := c.id, make(chan json.RawMessage, 1)
	c.waiting[id] = ch
	c.mu.Unlock()
	msg := map[string]any{"id": id, "method": method, "params": params}
	if c.session != "" {
		msg["sessionId"] = c.session
	}
	require.NoError(t, websocket.JSON.Send(c.ws, msg))
	select {
	case r := <-ch:
		return r
	case <-time.After(30 * time.Second):
		t.Fatalf("chromium did not answer %s", method)
		return nil
	}
}

// waitLoad waits for the page's next load event.
func (c *cdp) waitLoad(t *testing.T) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case m, ok := <-c.events:
			if !ok {
				t.Fatal("chromium closed the connection")
			}
			if m == "Page.loadEventFired" {
				return
			}
		case <-deadline:
			t.Fatal("no page load in 30 s")
		}
	}
}

// eval runs expression in the page and returns its value as a string.
func (c *cdp) eval(t *testing.T, expression string) string {
	t.Helper()
	var r struct {
		Result struct {
			Value any `json:"value"`
		} `json:"result"`
	}
	require.NoError(t, json.Unmarshal(c.call(t, "Runtime.evaluate", map[string]any{"expression": expression, "returnByValue": true}), &r))
	return fmt.Sprint(r.Result.Value)
}

// The sign-in page in a real browser: Debian's headless chromium, driven
// over the DevTools protocol, opens the address flwr login would print,
// fills the form and posts it (its cookies, CSRF token and
// Content-Security-Policy as a browser applies them), and the device
// login completes.
func TestSignInPageInChromium(t *testing.T) {
	t.Parallel()
	if !peer.Long() {
		t.Skip("chromium takes seconds to start here: this test runs with NODEKEYS_LONG=1")
	}
	bin := peer.Command(t, "chromium")
	s := startSite(t, writeAccounts(t, t.TempDir()), nil)
	ctx := context.Background()
	d, err := s.auth.StartLogin(ctx)
	require.NoError(t, err)

	// The flags of the machine's notes: no network beyond loopback, a
	// fresh profile. The test's CA is not the system's: certificate
	// errors are ignored, the page is still https (a secure context, so
	// __Host- cookies apply).
	cmd := exec.Command(bin, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir="+t.TempDir(), "--ignore-certificate-errors", "--remote-debugging-port=0", "--remote-allow-origins=http://127.0.0.1", "about:blank")
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	wsURL := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := regexp.MustCompile(`ws://\S+`).FindString(sc.Text()); m != "" {
				wsURL <- m
			}
		}
	}()
	var url string
	select {
	case url = <-wsURL:
	case <-time.After(60 * time.Second):
		t.Fatal("chromium printed no DevTools address in 60 s")
	}
	c := dialCDP(t, url)
	var target struct {
		TargetID string `json:"targetId"`
	}
	require.NoError(t, json.Unmarshal(c.call(t, "Target.createTarget", map[string]any{"url": "about:blank"}), &target))
	var att struct {
		SessionID string `json:"sessionId"`
	}
	require.NoError(t, json.Unmarshal(c.call(t, "Target.attachToTarget", map[string]any{"targetId": target.TargetID, "flatten": true}), &att))
	c.session = att.SessionID
	c.call(t, "Page.enable", map[string]any{})
	c.call(t, "Runtime.enable", map[string]any{})

	c.call(t, "Page.navigate", map[string]any{"url": d.VerificationURIComplete})
	c.waitLoad(t)
	assert.Equal(t, "Sign in", c.eval(t, `document.querySelector("h1").textContent`))
	code := d.VerificationURIComplete[strings.Index(d.VerificationURIComplete, "=")+1:]
	assert.Equal(t, code, c.eval(t, `document.getElementById("user_code").value`), "the code from the address is filled in")
	assert.Equal(t, "name", c.eval(t, `document.activeElement.id`), "the name field has the focus")
	// Every field has a label (accessibility), and the style applied
	// under the page's Content-Security-Policy.
	assert.Equal(t, "true", c.eval(t, `[...document.querySelectorAll("input:not([type=hidden])")].every(i => document.querySelector("label[for='"+i.id+"']"))`))
	assert.Equal(t, "block", c.eval(t, `getComputedStyle(document.querySelector("label")).display`))

	c.eval(t, `document.getElementById("name").value = "alice"; document.getElementById("password").value = "`+alicePassword+`"; document.querySelector("form").submit(); "sent"`)
	c.waitLoad(t)
	assert.Equal(t, "Signed in", c.eval(t, `document.querySelector("h1").textContent`))
	assert.Contains(t, c.eval(t, `document.body.innerText`), "You are signed in as alice")
	tok, err := s.auth.PollLogin(ctx, d.DeviceCode)
	require.NoError(t, err)
	require.NotNil(t, tok, "the device login completed")
	if os.Getenv("NODEKEYS_SCREENSHOT") != "" {
		var shot struct {
			Data []byte `json:"data"`
		}
		json.Unmarshal(c.call(t, "Page.captureScreenshot", map[string]any{}), &shot)
		os.WriteFile(os.Getenv("NODEKEYS_SCREENSHOT"), shot.Data, 0o644)
	}
}
