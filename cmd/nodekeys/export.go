package main

import (
	"errors"
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
				Usage: "the secrets and Compose file that turn on TLS and node authentication in Flower's Compose files",
				Description: "Writes DIR/secrets/ (ca.crt, server.pem, server.key and each SuperNode key) and\n" +
					"DIR/federation.yml, to merge after Flower's framework/docker/complete/compose.yml\n" +
					"(in place of its with-tls.yml). It gives the SuperLink the federation's certificate\n" +
					"and node authentication (the CSV allowlist before Flower 1.23, --enable-supernode-auth\n" +
					"and registration from 1.23), and one SuperNode service per key pair with the\n" +
					"federation's CA and its key. Files are named by absolute path. The server\n" +
					"certificate must name superlink, the SuperLink's service name. Private keys stay\n" +
					"0600 and yours; an ACL lets uid 49999, the user of Flower's images, read them.\n\n" +
					"   nodekeys export compose --flower-version 1.27.0\n" +
					"   docker compose -f compose.yml -f \"$PWD/compose/federation.yml\" up",
				Flags: append(exportFlags("compose"),
					&cli.StringFlag{Name: "flower-version", Value: deploy.DefaultFlowerVersion, Usage: "the Flower `VERSION` of the images: node authentication by CSV before 1.23, by registration after"}),
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
	registration, err := deploy.Registration(c.String("flower-version"))
	if err != nil {
		return &cliError{err: err, code: exitUsage}
	}
	f, err := loadFederation(c, false)
	if err != nil {
		return err
	}
	out := c.String("out")
	abs, err := filepath.Abs(out)
	if err != nil {
		return err
	}
	files, err := f.Compose(deploy.ComposeOptions{Dir: abs, FlowerVersion: c.String("flower-version")})
	if errors.Is(err, deploy.ErrNoServiceHost) {
		return withHint(err, fmt.Sprintf("renew it with the name: nodekeys certgen --force --add-san %s --out %s (the names it has are kept)", deploy.ComposeServiceHost, c.String("certs-dir")))
	}
	if err != nil {
		return err
	}
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
	var unreadable []string
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
			if err := grantFlower(filepath.Join(out, file.Name)); err != nil {
				unreadable = append(unreadable, filepath.Join(out, file.Name))
			}
		}
	}
	w := c.App.Writer
	composeFile := filepath.Join(abs, deploy.ComposeFileName)
	fmt.Fprintf(w, "wrote %s/secrets/ (%d files) and %s, for Flower %s and %d SuperNodes\n", out, len(files)-1, composeFile, c.String("flower-version"), len(f.Nodes))
	if len(unreadable) > 0 {
		fmt.Fprintf(c.App.ErrWriter, "nodekeys: note: no ACL could be set here; for Flower's containers (uid %d) to read the private keys run:\n  sudo chown %d:%d %s && sudo chmod 400 %s\n",
			deploy.FlowerUID, deploy.FlowerUID, deploy.FlowerUID, strings.Join(unreadable, " "), strings.Join(unreadable, " "))
	} else {
		fmt.Fprintf(w, "private keys: 0600 and yours, readable by uid %d (Flower's images) through an ACL\n", deploy.FlowerUID)
	}
	up := fmt.Sprintf("docker compose -f compose.yml -f %s", composeFile)
	fmt.Fprintf(w, "\nin Flower's framework/docker/complete/ (without with-tls.yml):\n")
	if registration {
		fmt.Fprintf(w, "  %s up -d superlink\n", up)
		fmt.Fprintf(w, "  nodekeys register --superlink 127.0.0.1:9093 --root-certificates %s --dir %s\n", filepath.Join(c.String("certs-dir"), certs.CACertFile), c.String("keys-dir"))
		fmt.Fprintf(w, "  %s up -d\n", up)
	} else {
		fmt.Fprintf(w, "  %s up -d\n", up)
	}
	return nil
}

// grantFlower lets Flower's container user read the file at p: through an
// ACL, which its owner may set; else, as root, by giving it to that user.
func grantFlower(p string) error {
	err := deploy.GrantRead(p, deploy.FlowerUID)
	if err == nil {
		return nil
	}
	if os.Geteuid() == 0 {
		if err := os.Lchown(p, deploy.FlowerUID, deploy.FlowerUID); err != nil {
			return err
		}
		return os.Chmod(p, 0o400)
	}
	return err
}
