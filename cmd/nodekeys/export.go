package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/nodekeys/nodekeys/certs"
	"github.com/nodekeys/nodekeys/deploy"
	"github.com/nodekeys/nodekeys/internal/atomicfile"
	"github.com/nodekeys/nodekeys/keys/keyset"
)

func exportFlags(out string) []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Value: out, Usage: "output `DIR` (mode 0700; files holding keys 0600)"},
		&cli.StringFlag{Name: "certs-dir", Value: certs.DefaultDir, Usage: "the certificate folder"},
		&cli.StringFlag{Name: "keys-dir", Value: keyset.DefaultDir, Usage: "the key folder"},
		&cli.StringFlag{Name: "prefix", Usage: "key file prefix (default: supernode_credentials if there are such files, else client_credentials)"},
		&cli.BoolFlag{Name: "force", Usage: "replace files already in DIR"},
	}
}

func exportCommand() *cli.Command {
	return &cli.Command{
		Name:  "export",
		Usage: "turn the federation's files into Kubernetes or Docker Compose secrets",
		Subcommands: []*cli.Command{
			{
				Name:  "k8s",
				Usage: "Secrets and Helm values for Flower's charts, for kubectl apply",
				Description: "Writes DIR/secrets.yaml: the SuperLink's kubernetes.io/tls Secret (tls.crt, tls.key,\n" +
					"ca.crt) and, per SuperNode, a Secret with its OpenSSH key and the CA; and per\n" +
					"SuperNode DIR/values-NAME.yaml for Flower's SuperNode chart, with the key inline\n" +
					"(global.nodeAuth.authSupernodePrivateKey). With --cert-manager, a cert-manager\n" +
					"Issuer of type CA backed by the development CA and a Certificate replace the\n" +
					"static server certificate, so cert-manager issues and renews it.\n\n" +
					"   nodekeys export k8s --namespace flower && kubectl apply -f k8s/secrets.yaml",
				Flags: append(exportFlags("k8s"),
					&cli.StringFlag{Name: "namespace", Aliases: []string{"n"}, Value: "default", Usage: "the namespace of the objects"},
					&cli.BoolFlag{Name: "cert-manager", Usage: "add a cert-manager Issuer (CA) and Certificate for the SuperLink"}),
				Action: exportK8s,
			},
			{
				Name:  "compose",
				Usage: "the secrets folder and secrets: block for Flower's Docker Compose files",
				Description: "Writes DIR/secrets/ (ca.crt, server.pem, server.key and each SuperNode key) and\n" +
					"DIR/secrets.yaml, which maps them to /app/certificates/{ca.crt,server.pem,server.key}\n" +
					"and /app/keys/. Private keys are given to uid 49999, the user Flower's images run\n" +
					"as, with mode 0400: readable by the container, by no other user. Not run as root,\n" +
					"nodekeys keeps them 0600 and prints the chown to run.\n\n" +
					"   nodekeys export compose && docker compose -f compose.yml -f compose/secrets.yaml up",
				Flags:  exportFlags("compose"),
				Action: exportCompose,
			},
		},
	}
}

func loadFederation(c *cli.Context, withCAKey bool) (*deploy.Federation, error) {
	prefix := c.String("prefix")
	if prefix == "" {
		prefix = keyset.DefaultPrefix
		if idx, err := keyset.Existing(c.String("keys-dir"), initPrefix); err == nil && len(idx) > 0 {
			prefix = initPrefix
		}
	}
	return deploy.Load(c.String("certs-dir"), c.String("keys-dir"), prefix, withCAKey)
}

// openOut makes the output folder (0700) and opens it.
func openOut(path string) (*atomicfile.Dir, error) {
	if err := atomicfile.MkdirPrivate(path); err != nil {
		return nil, err
	}
	return atomicfile.OpenDir(path)
}

func exportK8s(c *cli.Context) error {
	if c.NArg() > 0 {
		return usageErr("export k8s takes no arguments, got %q", c.Args().First())
	}
	f, err := loadFederation(c, c.Bool("cert-manager"))
	if err != nil {
		return err
	}
	files, err := f.Kubernetes(deploy.K8sOptions{Namespace: c.String("namespace"), CertManager: c.Bool("cert-manager")})
	if err != nil {
		return err
	}
	d, err := openOut(c.String("out"))
	if err != nil {
		return err
	}
	defer d.Close()
	for _, file := range files {
		mode := os.FileMode(0o644)
		if file.Secret {
			mode = 0o600
		}
		if err := d.Write(file.Name, file.Data, mode, c.Bool("force")); err != nil {
			return refuseHint(err)
		}
	}
	fmt.Fprintf(c.App.Writer, "wrote %s (the SuperLink's TLS Secret and %d SuperNode Secrets) and %d values files, 0600\n",
		filepath.Join(c.String("out"), "secrets.yaml"), len(f.Nodes), len(files)-1)
	fmt.Fprintf(c.App.Writer, "apply: kubectl apply -f %s\n", filepath.Join(c.String("out"), "secrets.yaml"))
	return nil
}

func refuseHint(err error) error {
	if strings.Contains(err.Error(), "file exists") {
		return withHint(err, "use --force to replace it, or another --out")
	}
	return err
}

func exportCompose(c *cli.Context) error {
	if c.NArg() > 0 {
		return usageErr("export compose takes no arguments, got %q", c.Args().First())
	}
	f, err := loadFederation(c, false)
	if err != nil {
		return err
	}
	files, err := f.Compose()
	if err != nil {
		return err
	}
	out := c.String("out")
	d, err := openOut(out)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := atomicfile.MkdirPrivate(filepath.Join(out, "secrets")); err != nil {
		return err
	}
	sd, err := d.Sub("secrets")
	if err != nil {
		return err
	}
	defer sd.Close()
	var unowned []string
	for _, file := range files {
		dir, name := d, file.Name
		if rest, ok := strings.CutPrefix(file.Name, "secrets/"); ok {
			dir, name = sd, rest
		}
		mode := os.FileMode(0o644)
		if file.Private {
			mode = 0o600
		}
		if err := dir.Write(name, file.Data, mode, c.Bool("force")); err != nil {
			return refuseHint(err)
		}
		if file.Private {
			p := filepath.Join(out, file.Name)
			if err := os.Lchown(p, deploy.FlowerUID, deploy.FlowerUID); err == nil {
				os.Chmod(p, 0o400)
			} else {
				unowned = append(unowned, p)
			}
		}
	}
	fmt.Fprintf(c.App.Writer, "wrote %s/secrets/ (%d files) and %s/secrets.yaml\n", out, len(files)-1, out)
	if len(unowned) > 0 {
		fmt.Fprintf(c.App.ErrWriter, "nodekeys: note: the private keys stay 0600 and yours; for Flower's containers (uid %d) run:\n  sudo chown %d:%d %s && sudo chmod 400 %s\n",
			deploy.FlowerUID, deploy.FlowerUID, deploy.FlowerUID, strings.Join(unowned, " "), strings.Join(unowned, " "))
	}
	return nil
}
