#!/bin/sh
# iptables-restore-cost.sh: what one `iptables-restore --noflush` run costs
# that adds or deletes one rule in a chain already holding N rules, for
# iptables-nft and iptables-legacy (src/bench/README.md, "Where dpfd still
# falls short"). Run as root; it works in a network namespace of its own,
# which it deletes, and touches nothing else.
set -eu

if [ "${1:-}" = inner ]; then
	variant=$2 n=$3
	ipt=iptables-$variant
	$ipt -t filter -N COSTPROBE
	{
		echo '*filter'
		i=0
		while [ "$i" -lt "$n" ]; do
			echo "-A COSTPROBE -d 198.51.100.$((i % 250 + 2))/32 -p tcp --dport $((1024 + i)) -j ACCEPT"
			i=$((i + 1))
		done
		echo COMMIT
	} | $ipt-restore --noflush
	start=$(date +%s%N)
	k=0
	while [ "$k" -lt 20 ]; do
		printf '*filter\n-A COSTPROBE -d 198.51.100.1/32 -p udp --dport %d -j ACCEPT\nCOMMIT\n' $((40000 + k)) | $ipt-restore --noflush
		printf '*filter\n-D COSTPROBE -d 198.51.100.1/32 -p udp --dport %d -j ACCEPT\nCOMMIT\n' $((40000 + k)) | $ipt-restore --noflush
		k=$((k + 1))
	done
	end=$(date +%s%N)
	echo "iptables-$variant, $n rules in the chain: $(((end - start) / 40000)) us per run (mean of 20 -A and 20 -D)"
	$ipt -t filter -F COSTPROBE
	$ipt -t filter -X COSTPROBE
	exit 0
fi

ns=dpf-iptcost-$$
ip netns add "$ns"
trap 'ip netns del "$ns"' EXIT
for variant in nft legacy; do
	for n in 0 100 1000 10000; do
		ip netns exec "$ns" sh "$0" inner "$variant" "$n"
	done
done
