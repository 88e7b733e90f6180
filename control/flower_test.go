package control_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nodekeys/nodekeys/control"
	"github.com/nodekeys/nodekeys/internal/peer"
)

// flowerPython runs a script under the Python path of Flower version v, as
// the peer's own bin/flwr does, and returns its output.
func flowerPython(t *testing.T, dir, v string, env []string, script string) string {
	libs := []string{filepath.Join(dir, "src", "flower-"+v+".0", "framework", "py")}
	if v == "1.27" {
		libs = append(libs, filepath.Join(dir, "lib27"))
	}
	libs = append(libs, filepath.Join(dir, "lib"), filepath.Join(dir, "shims"))
	cmd := exec.Command("/usr/bin/python3", "-c", script)
	cmd.Env = append(append(os.Environ(), "PYTHONPATH="+strings.Join(libs, ":"), "FLWR_TELEMETRY_ENABLED=0"), env...)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	return strings.TrimSpace(string(out))
}

// The flwr CLI's own token stores, written and read by real Flower: the
// tokens flwr login stored are the ones nodekeys sends, and the pair
// nodekeys keeps after a refresh is the one the flwr CLI then loads. Each
// Python start of Flower costs seconds: long form only.
func TestFlowerCLIStores(t *testing.T) {
	if !peer.Long() {
		t.Skip("starts Flower's Python twice: long form only (NODEKEYS_LONG=1); TestLoginTokensSentAndRefreshed checks the same bytes")
	}
	t.Parallel()
	dir := peer.FlowerDir(t)
	tmp := t.TempDir()

	t.Run("1.27", func(t *testing.T) {
		t.Parallel()
		home := filepath.Join(tmp, "flwrhome")
		env := []string{"FLWR_HOME=" + home}
		flowerPython(t, dir, "1.27", env, `
from flwr.cli.auth_plugin.oidc_cli_plugin import OidcCliPlugin
from flwr.common.typing import AccountAuthCredentials
OidcCliPlugin("127.0.0.1:9093").store_tokens(AccountAuthCredentials(access_token="access-1", refresh_token="refresh-1"))
OidcCliPlugin("other.example:9093").store_tokens(AccountAuthCredentials(access_token="OTHER", refresh_token="OTHER"))
`)
		b, err := os.ReadFile(filepath.Join(home, "credentials.yaml"))
		require.NoError(t, err)
		assert.Equal(t, flwr127, string(b), "the bytes the default test reads")
		l, err := control.ReadLogin(home, "127.0.0.1:9093")
		require.NoError(t, err)
		assert.Equal(t, control.Tokens{Access: "access-1", Refresh: "refresh-1"}, l.Tokens)
		require.NoError(t, l.Write(&control.Tokens{Access: "access-2", Refresh: "refresh-2"}))
		out := flowerPython(t, dir, "1.27", env, `
from flwr.cli.auth_plugin.oidc_cli_plugin import OidcCliPlugin
for h in ("127.0.0.1:9093", "other.example:9093"):
    p = OidcCliPlugin(h); p.load_tokens(); print(p.access_token, p.refresh_token)
`)
		assert.Equal(t, "access-2 refresh-2\nOTHER OTHER", out)
	})
	t.Run("1.25", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(tmp, "project", ".flwr", ".credentials", "my-federation.json")
		require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o700))
		env := []string{"CREDS=" + path}
		flowerPython(t, dir, "1.25", env, `
import os
from pathlib import Path
from flwr.cli.auth_plugin.oidc_cli_plugin import OidcCliPlugin
from flwr.common.typing import AccountAuthCredentials
OidcCliPlugin(Path(os.environ["CREDS"])).store_tokens(AccountAuthCredentials(access_token="access-1", refresh_token="refresh-1"))
`)
		b, err := os.ReadFile(path)
		require.NoError(t, err)
		assert.Equal(t, flwr125, string(b), "the bytes the default test reads")
		l, err := control.ReadLogin(filepath.Join(tmp, "project"), "127.0.0.1:9093")
		require.NoError(t, err)
		assert.Equal(t, control.Tokens{Access: "access-1", Refresh: "refresh-1"}, l.Tokens)
		require.NoError(t, l.Write(&control.Tokens{Access: "access-2", Refresh: "refresh-2"}))
		out := flowerPython(t, dir, "1.25", env, `
import os
from pathlib import Path
from flwr.cli.auth_plugin.oidc_cli_plugin import OidcCliPlugin
p = OidcCliPlugin(Path(os.environ["CREDS"])); p.load_tokens(); print(p.access_token, p.refresh_token)
`)
		assert.Equal(t, "access-2 refresh-2", out)
	})
}
