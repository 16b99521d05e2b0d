// Federation support for the team's external-process deployment (external_deployment.go in the shared
// Complement driver), compiled into Complement's root package next to it by `go test -overlay`
// (scripts/complement/run.sh); neither Complement nor the shared driver is modified.
//
// Complement makes a new certificate authority in every test binary (config.GenerateCA) and signs its own
// federation server's certificate with it; with Docker it hands the CA to each homeserver image. Here the
// first deployment of a test binary writes that CA (certificate and key, PEM) into the run folder and
// names the files in the environment of every server started after it (COMPLEMENT_CA_CERT,
// COMPLEMENT_CA_KEY), so that scripts/complement/start-server.sh can issue each server a certificate for
// its name and make it trust Complement's federation server.
//
// Go runs the init functions of a package's files in file-name order, so this init (zzz_…) runs after
// external_deployment.go's (zz_…), which installs the custom deployer this one wraps.
package complement

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/matrix-org/complement/config"
	"github.com/matrix-org/complement/ct"
)

func init() {
	if customDeployer == nil {
		return
	}
	deploy := customDeployer
	var once sync.Once
	var caErr error
	customDeployer = func(t ct.TestLike, numServers int, cfg *config.Complement) Deployment {
		once.Do(func() { caErr = myelinWriteCA(cfg) })
		if caErr != nil {
			ct.Fatalf(t, "writing Complement's CA: %s", caErr)
		}
		return deploy(t, numServers, cfg)
	}
}

func myelinWriteCA(cfg *config.Complement) error {
	certPEM, err := cfg.CACertificateBytes()
	if err != nil {
		return err
	}
	keyPEM, err := cfg.CAPrivateKeyBytes()
	if err != nil {
		return err
	}
	dir := extRunDir()
	certFile := filepath.Join(dir, fmt.Sprintf("ca-%d.crt", os.Getpid()))
	keyFile := filepath.Join(dir, fmt.Sprintf("ca-%d.key", os.Getpid()))
	if err := os.WriteFile(certFile, certPEM, 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		return err
	}
	os.Setenv("COMPLEMENT_CA_CERT", certFile)
	os.Setenv("COMPLEMENT_CA_KEY", keyFile)
	return nil
}
