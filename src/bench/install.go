package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// installTimeout bounds downloading and unpacking one package.
const installTimeout = 3 * time.Minute

// ErrNoMiniupnpd is returned when a miniupnpd build cannot be found or
// fetched.
var ErrNoMiniupnpd = errors.New("miniupnpd not available")

// EnsureMiniupnpd returns the path of the miniupnpd binary of target t
// (MiniupnpdNftables or MiniupnpdIptables). It uses the installed
// /usr/sbin/miniupnpd when the matching Debian package is installed, else
// cacheDir/<package>/usr/sbin/miniupnpd, which it fills with `apt-get
// download` and `dpkg-deb -x` when missing. The two packages conflict, so
// unpacking lets both builds exist side by side without installing either.
func EnsureMiniupnpd(t Target, cacheDir string) (string, error) {
	pkg := string(t) // the Debian package names equal the target names
	if out, err := exec.Command("dpkg-query", "-W", "-f", "${Status}", pkg).Output(); err == nil &&
		strings.Contains(string(out), "install ok installed") {
		if _, err := os.Stat("/usr/sbin/miniupnpd"); err == nil {
			return "/usr/sbin/miniupnpd", nil
		}
	}
	if cacheDir == "" {
		return "", fmt.Errorf("%s is not installed and no cache directory is set: %w", pkg, ErrNoMiniupnpd)
	}
	dir, err := filepath.Abs(filepath.Join(cacheDir, pkg))
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "usr", "sbin", "miniupnpd")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), installTimeout)
	defer cancel()
	dl := exec.CommandContext(ctx, "apt-get", "download", pkg)
	dl.Dir = dir
	if out, err := dl.CombinedOutput(); err != nil {
		return "", fmt.Errorf("apt-get download %s: %w: %s (%w)", pkg, err, strings.TrimSpace(string(out)), ErrNoMiniupnpd)
	}
	debs, _ := filepath.Glob(filepath.Join(dir, pkg+"_*.deb"))
	if len(debs) == 0 {
		return "", fmt.Errorf("apt-get download %s left no .deb: %w", pkg, ErrNoMiniupnpd)
	}
	if out, err := exec.CommandContext(ctx, "dpkg-deb", "-x", debs[0], dir).CombinedOutput(); err != nil {
		return "", fmt.Errorf("dpkg-deb -x %s: %w: %s", debs[0], err, out)
	}
	if _, err := os.Stat(bin); err != nil {
		return "", fmt.Errorf("%s has no usr/sbin/miniupnpd: %w", debs[0], ErrNoMiniupnpd)
	}
	return bin, nil
}
