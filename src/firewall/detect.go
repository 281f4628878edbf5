package firewall

import (
	"errors"
	"fmt"
)

// ErrNotBuilt is returned (wrapped) by New for a backend this build of
// dpfd leaves out (build tag noiptables).
var ErrNotBuilt = errors.New("not in this build of dpfd")

// Backend kinds accepted by New.
const (
	KindAuto     = "auto"
	KindNFTables = "nftables"
	KindIPTables = "iptables"
)

// DetectEnv holds the facts Detect decides on. New gathers them from the
// system; tests write them down.
type DetectEnv struct {
	// NFTablesUsable: nftables answers over netlink (listing tables works).
	NFTablesUsable bool
	// IPTablesPresent: an iptables binary is in $PATH.
	IPTablesPresent bool
	// IPTablesLegacy: that binary is the legacy (x_tables) variant, not
	// iptables-nft. Meaningless without IPTablesPresent.
	IPTablesLegacy bool
	// LegacyRulesPresent: the kernel has legacy x_tables tables loaded
	// (/proc/net/ip_tables_names is not empty), i.e. something is using
	// iptables-legacy.
	LegacyRulesPresent bool
}

// Detect picks the backend for env: "nftables" or "iptables".
//
// nftables is preferred whenever it works over netlink, except on a system
// that is clearly run by iptables-legacy (OpenWrt's fw3): iptables is the
// legacy variant and legacy tables are in use. There, rules of ours in
// nftables would work but live beside the system firewall where its tools
// and its operator don't look, so we join it in iptables instead. Without
// nftables, any iptables will do. With neither it returns ErrUnsupported.
func Detect(env DetectEnv) (string, error) {
	legacySystem := env.IPTablesPresent && env.IPTablesLegacy && env.LegacyRulesPresent
	switch {
	case env.NFTablesUsable && !legacySystem:
		return KindNFTables, nil
	case env.IPTablesPresent:
		return KindIPTables, nil
	}
	return "", fmt.Errorf("%w: neither nftables over netlink nor an iptables binary", ErrUnsupported)
}
