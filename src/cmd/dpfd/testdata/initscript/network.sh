# Stand-in for OpenWrt's /lib/functions/network.sh (package base-files),
# reduced to the two functions files/etc/init.d/dpf uses. The real ones
# ask netifd (ubus call network.interface.NAME status) and set the
# variable named by $1 to the network's layer-3 device (l3_device) or its
# main device (device), leaving it unset while netifd has none. Here
# netifd's answers are the files $STANDIN_NETIFD/NAME.l3_device and
# NAME.device, absent while the network is down.

network_get_device() {
	[ -s "$STANDIN_NETIFD/$2.l3_device" ] || return 1
	eval "$1=\$(cat \"\$STANDIN_NETIFD/$2.l3_device\")"
}

network_get_physdev() {
	[ -s "$STANDIN_NETIFD/$2.device" ] || return 1
	eval "$1=\$(cat \"\$STANDIN_NETIFD/$2.device\")"
}
