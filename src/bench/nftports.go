package bench

import (
	"encoding/binary"
	"fmt"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"

	"github.com/dpf-router/dpf/src/internal/lab"
)

// nftPorts returns the external ports that the nftables ruleset in the
// router's namespace maps, read over netlink: the keys of every set or map
// whose key type is inet_service (dpfd's dnat maps), and every port a rule
// compares the transport destination port with (miniupnpd's one rule per
// mapping). The nft tool needs about 0.4-0.8 s to list 10,000 set
// elements, which would dominate the restart figure it is meant to time;
// this takes milliseconds, for either daemon alike.
func nftPorts(l *lab.Lab) (map[uint16]bool, error) {
	ports := map[uint16]bool{}
	err := lab.In(l.Router, func() error {
		c, err := nftables.New(nftables.AsLasting())
		if err != nil {
			return err
		}
		defer c.CloseLasting()
		tables, err := c.ListTables()
		if err != nil {
			return fmt.Errorf("listing tables: %w", err)
		}
		for _, t := range tables {
			sets, err := c.GetSets(t)
			if err != nil {
				return fmt.Errorf("listing sets of %s: %w", t.Name, err)
			}
			for _, s := range sets {
				if s.KeyType != nftables.TypeInetService {
					continue
				}
				es, err := c.GetSetElements(s)
				if err != nil {
					return fmt.Errorf("listing %s %s: %w", t.Name, s.Name, err)
				}
				for _, e := range es {
					if len(e.Key) >= 2 {
						ports[binary.BigEndian.Uint16(e.Key)] = true
					}
				}
			}
			chains, err := c.ListChainsOfTableFamily(t.Family)
			if err != nil {
				return fmt.Errorf("listing chains: %w", err)
			}
			for _, ch := range chains {
				if ch.Table.Name != t.Name {
					continue
				}
				rules, err := c.GetRules(t, ch)
				if err != nil {
					return fmt.Errorf("listing %s %s: %w", t.Name, ch.Name, err)
				}
				for _, r := range rules {
					dportRule(r.Exprs, ports)
				}
			}
		}
		return nil
	})
	return ports, err
}

// dportRule adds to ports the port of every "th dport == PORT" in es: a
// load of the two bytes at offset 2 of the transport header followed by an
// equality comparison of the same register.
func dportRule(es []expr.Any, ports map[uint16]bool) {
	for i := 0; i+1 < len(es); i++ {
		p, ok := es[i].(*expr.Payload)
		if !ok || p.Base != expr.PayloadBaseTransportHeader || p.Offset != 2 || p.Len != 2 {
			continue
		}
		if c, ok := es[i+1].(*expr.Cmp); ok && c.Op == expr.CmpOpEq && c.Register == p.DestRegister && len(c.Data) == 2 {
			ports[binary.BigEndian.Uint16(c.Data)] = true
		}
	}
}
