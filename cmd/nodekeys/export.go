package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/nodekeys/nodekeys/certs"
	"github.com/nodekeys/nodekeys/deploy"
	"github.com/nodekeys/nodekeys/internal/atomicfile"
	"github.com/nodekeys/nodekeys/keyset"
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
				Usage: "Secrets for kubectl apply and values files for Flower's Helm charts",
				Description: "Writes the manifests DIR/superlink.yaml (the SuperLink's kubernetes.io/tls Secret\n" +
					"flower-superlink-tls: tls.crt, tls.key, ca.crt; 0600) and DIR/supernodes.yaml (the\n" +
					"CA alone, flower-superlink-ca, for SuperNodes), and apart from them, so that\n" +
					"kubectl apply -f DIR/ reads only manifests, DIR/values/superlink.yaml (tls.existingSecret,\n" +
					"the chart's own issuer and certificate off, node authentication) and per SuperNode\n" +
					"DIR/values/NAME.yaml (supernode.superlink.certificate.existingSecret). A SuperNode's\n" +
					"private key is in no file of DIR: helm reads it from the key folder (--set-file).\n" +
					"With --cert-manager, a cert-manager Issuer of type CA backed by the development CA\n" +
					"and a Certificate issue and renew flower-superlink-tls instead.\n\n" +
					"   nodekeys export k8s --namespace flower && kubectl apply -n flower -f k8s/",
				Flags: append(exportFlags("k8s"),
					&cli.StringFlag{Name: "namespace", Aliases: []string{"n"}, Value: "default", Usage: "the namespace of the objects"},
					&cli.BoolFlag{Name: "cert-manager", Usage: "add a cert-manager Issuer (CA) and Certificate for the SuperLink"},
					&cli.StringFlag{Name: "flower-version", Value: deploy.DefaultFlowerVersion, Usage: "the Flower `VERSION` of the charts: node authentication by allowlist before 1.23, by registration after"}),
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

// prefixIn is the key files' prefix in dir: --prefix if given, else
// supernode_credentials (init's) if dir holds such files and none named
// client_credentials (keygen's), else client_credentials.
func prefixIn(c *cli.Context, dir string) string {
	if c.IsSet("prefix") {
		return c.String("prefix")
	}
	if ours, err := keyset.Existing(dir, initPrefix); err == nil && len(ours) > 0 {
		if theirs, err := keyset.Existing(dir, keyset.DefaultPrefix); err == nil && len(theirs) == 0 {
			return initPrefix
		}
	}
	return keyset.DefaultPrefix
}

func loadFederation(c *cli.Context, withCAKey bool) (*deploy.Federation, error) {
	prefix := prefixIn(c, c.String("keys-dir"))
	f, err := deploy.Load(c.String("certs-dir"), c.String("keys-dir"), prefix, withCAKey)
	var ce *deploy.CertFileError
	if errors.As(err, &ce) && errors.Is(err, fs.ErrNotExist) {
		return nil, withHint(err, "pass the certificate folder with --certs-dir, or make one: "+shellJoin([]string{"nodekeys", "certgen", "--out", c.String("certs-dir")}))
	}
	return f, err
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
	if _, err := deploy.Registration(c.String("flower-version")); err != nil {
		return &cliError{err: err, code: exitUsage}
	}
	f, err := loadFederation(c, c.Bool("cert-manager"))
	if err != nil {
		return err
	}
	ns := c.String("namespace")
	files, err := f.Kubernetes(deploy.K8sOptions{Namespace: ns, CertManager: c.Bool("cert-manager"), FlowerVersion: c.String("flower-version")})
	if err != nil {
		return err
	}
	out := c.String("out")
	d, err := openOut(out)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := atomicfile.MkdirPrivate(filepath.Join(out, deploy.ValuesDir)); err != nil {
		return err
	}
	vd, err := d.Sub(deploy.ValuesDir)
	if err != nil {
		return err
	}
	defer vd.Close()
	for _, file := range files {
		dir, name := d, file.Name
		if rest, ok := strings.CutPrefix(file.Name, deploy.ValuesDir+"/"); ok {
			dir, name = vd, rest
		}
		mode := os.FileMode(0o644)
		if file.Secret {
			mode = 0o600
		}
		if err := dir.Write(name, file.Data, mode, c.Bool("force")); err != nil {
			return refuseHint(err)
		}
	}
	w := c.App.Writer
	fmt.Fprintf(w, "wrote %s (the SuperLink's TLS, 0600), %s (the CA, for SuperNodes) and %d values files in %s\n",
		filepath.Join(out, "superlink.yaml"), filepath.Join(out, "supernodes.yaml"), len(files)-2, filepath.Join(out, deploy.ValuesDir))
	fmt.Fprintf(w, "apply:     kubectl apply -n %s -f %s\n", ns, out+string(filepath.Separator))
	fmt.Fprintf(w, "SuperLink: helm install superlink CHART -n %s -f %s\n", ns, filepath.Join(out, deploy.ValuesDir, "superlink.yaml"))
	for _, n := range f.Nodes {
		fmt.Fprintf(w, "SuperNode: helm install %s CHART -n %s -f %s --set-file global.nodeAuth.authSupernodePrivateKey=%s\n",
			strings.ReplaceAll(n.Name, "_", "-"), ns, filepath.Join(out, deploy.ValuesDir, strings.ReplaceAll(n.Name, "_", "-")+".yaml"), filepath.Join(c.String("keys-dir"), n.Name))
	}
	return nil
}

func refuseHint(err error) error {
	if errors.Is(err, fs.ErrExist) {
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
		// The command runs in Flower's folder, not here: absolute paths.
		ca, err := filepath.Abs(filepath.Join(c.String("certs-dir"), certs.CACertFile))
		if err != nil {
			return err
		}
		keysDir, err := filepath.Abs(c.String("keys-dir"))
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "  %s up -d superlink\n", up)
		fmt.Fprintf(w, "  nodekeys register --superlink 127.0.0.1:9093 --root-certificates %s --dir %s\n", ca, keysDir)
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
