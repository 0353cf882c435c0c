package tlsgen

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"
)

const usage = `usage:
  sandboxd tls ca create [-dir D] [-days N]
  sandboxd tls cert create -ca-cert ca.pem -ca-key ca-key.pem -name node1 -hosts 10.0.0.1,n1.local [-dir D] [-days N]`

// Main runs `sandboxd tls <args>`: it creates the CA or a node certificate
// and prints the paths written to stdout.
func Main(args []string, stdout, stderr io.Writer) error {
	if len(args) < 2 || args[1] != "create" {
		return fmt.Errorf("%s", usage)
	}
	now := time.Now()
	switch args[0] {
	case "ca":
		fs := flag.NewFlagSet("sandboxd tls ca create", flag.ContinueOnError)
		fs.SetOutput(stderr)
		dir := fs.String("dir", ".", "directory to write ca.pem and ca-key.pem into")
		days := fs.Int("days", DefaultCADays, "validity in days")
		if err := parse(fs, args[2:]); err != nil {
			return err
		}
		cert, key, err := CreateCA(*dir, *days, now)
		if err != nil {
			return fmt.Errorf("create CA: %w", err)
		}
		fmt.Fprintf(stdout, "CA certificate: %s\nCA key:         %s (keep it off the nodes)\n", cert, key)
		return nil
	case "cert":
		fs := flag.NewFlagSet("sandboxd tls cert create", flag.ContinueOnError)
		fs.SetOutput(stderr)
		var o CertOptions
		fs.StringVar(&o.CACert, "ca-cert", "ca.pem", "CA certificate (PEM)")
		fs.StringVar(&o.CAKey, "ca-key", "ca-key.pem", "CA key (PEM)")
		fs.StringVar(&o.Name, "name", "", "node name: common name and file name <name>.pem, <name>-key.pem")
		hosts := fs.String("hosts", "", "comma-separated DNS names and IPs peers use to dial this node (its RAFT_ADVERTISE host)")
		fs.StringVar(&o.Dir, "dir", ".", "output directory")
		fs.IntVar(&o.Days, "days", DefaultCertDays, "validity in days")
		if err := parse(fs, args[2:]); err != nil {
			return err
		}
		for _, h := range strings.Split(*hosts, ",") {
			if h = strings.TrimSpace(h); h != "" {
				o.Hosts = append(o.Hosts, h)
			}
		}
		cert, key, err := CreateCert(o, now)
		if err != nil {
			return fmt.Errorf("create certificate: %w", err)
		}
		fmt.Fprintf(stdout, "certificate: %s\nkey:         %s\n", cert, key)
		return nil
	default:
		return fmt.Errorf("%s", usage)
	}
}

func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return errors.New("unexpected arguments: " + strings.Join(fs.Args(), " "))
	}
	return nil
}
