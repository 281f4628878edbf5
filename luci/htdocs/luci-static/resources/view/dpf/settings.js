'use strict';
'require view';
'require form';
'require uci';

/*
 * Settings of dpfd: the "config dpf 'main'" section, the "config rule"
 * sections and the "config key" sections (client keys for authenticated
 * requests) of /etc/config/dpf. dpfd rejects options it does not know, so
 * this form writes only the options of README.md's tables, a rule is always
 * written with its action and a key with its secret (both required).
 */

/* validatePorts accepts what dpfd's int_ports and ext_ports accept: a
 * port, a range like 1024-65535, or "any". */
function validatePorts(section_id, value) {
	if (value == null || value === '' || value === 'any')
		return true;

	var m = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(value);
	if (m) {
		var lo = +m[1], hi = (m[2] != null) ? +m[2] : lo;
		if (lo >= 1 && lo <= hi && hi <= 65535)
			return true;
	}

	return _('Expecting a port (1-65535), a range like 1024-65535, or "any"');
}

/* validateSecret accepts what dpfd reads as a key: hex digits or base64
 * (standard or URL alphabet) of 32 to 64 bytes. */
function validateSecret(section_id, value) {
	var v = (value || '').trim(), n = 0;

	if (/^[0-9a-fA-F]+$/.test(v)) {
		if (v.length % 2 == 0)
			n = v.length / 2;
	}
	else if (/^[A-Za-z0-9+\/_-]+={0,2}$/.test(v)) {
		n = Math.floor(v.replace(/=+$/, '').length * 3 / 4);
	}

	if (n >= 32 && n <= 64)
		return true;

	return _('Expecting a key of 64 hex digits or the base64 of 32 bytes, as "dpfd genkey" prints');
}

/* validateKeyRef accepts what a rule's option auth lists: "any" or the
 * name of a key. */
function validateKeyRef(section_id, value) {
	if (value == null || value === '' || value === 'any' || /^[A-Za-z0-9_][A-Za-z0-9_.@-]{0,63}$/.test(value))
		return true;

	return _('Expecting the name of a client key, or "any"');
}

/* keyCache holds the secrets offered for new key sections, one per section,
 * so that a re-render does not change them. */
var keyCache = {};

/* randomKey returns 32 random bytes as 64 hex digits, from the browser's
 * cryptographic random number generator. */
function randomKey() {
	var b = new Uint8Array(32), s = '';

	window.crypto.getRandomValues(b);
	for (var i = 0; i < b.length; i++)
		s += (b[i] < 16 ? '0' : '') + b[i].toString(16);

	return s;
}

/* validatePath accepts an absolute file name, as dpfd does. */
function validatePath(section_id, value) {
	if (value == null || value === '' || /^\/[^\n\r]*$/.test(value))
		return true;

	return _('Expecting an absolute path, starting with /');
}

return view.extend({
	load: function() {
		return uci.load('dpf');
	},

	render: function() {
		var m, s, o;

		m = new form.Map('dpf', _('DPF port forwarding'),
			_('dpfd opens pinholes in the firewall for hosts on the LAN that ask for them with PCP or NAT-PMP, and closes them when they are released or lapse. Saved changes apply at once, without cutting connections; a change of the interfaces, the backend, the database, the control socket or D-Bus restarts dpfd, which keeps its pinholes.'));

		s = m.section(form.NamedSection, 'main', 'dpf', _('Service'));
		s.addremove = false;
		s.tab('general', _('General Settings'));
		s.tab('limits', _('Lifetimes and limits'));
		s.tab('auth', _('Authentication'));
		s.tab('advanced', _('Advanced Settings'));

		o = s.taboption('general', form.Flag, 'enabled', _('Enabled'),
			_('When off, dpfd removes its pinholes and answers no requests.'));
		o.default = o.enabled;
		o.rmempty = false;

		o = s.taboption('general', form.DynamicList, 'lan_interface', _('LAN interfaces'),
			_('Devices (like br-lan) or network interfaces to answer PCP and NAT-PMP on. Their subnets are what "lan" means in the rules.'));
		o.datatype = 'netdevname';
		o.rmempty = false;
		o.placeholder = 'br-lan';

		o = s.taboption('general', form.Value, 'wan_interface', _('WAN interface'),
			_('The interface facing the internet, where the forwarded connections arrive.'));
		o.datatype = 'netdevname';
		o.rmempty = false;
		o.placeholder = 'wan';

		o = s.taboption('general', form.Value, 'external_address', _('External address'),
			_('Address reported to clients. Leave empty to use the first IPv4 address of the WAN interface; set it when the router is itself behind another NAT.'));
		o.datatype = 'ip4addr("nomask")';
		o.placeholder = _('address of the WAN interface');

		o = s.taboption('general', form.ListValue, 'backend', _('Firewall backend'),
			_('Changing it restarts dpfd.'));
		o.value('auto', _('automatic (nftables when available)'));
		o.value('nftables', 'nftables');
		o.value('iptables', 'iptables');
		o.default = 'auto';

		o = s.taboption('limits', form.Value, 'min_lifetime', _('Shortest lifetime'),
			_('Seconds; shorter requested lifetimes are raised to this.'));
		o.datatype = 'range(1, 4294967295)';
		o.placeholder = '120';

		o = s.taboption('limits', form.Value, 'max_lifetime', _('Longest lifetime'),
			_('Seconds; longer requested lifetimes are lowered to this.'));
		o.datatype = 'range(1, 4294967295)';
		o.placeholder = '86400';
		o.validate = function(section_id, value) {
			var min = this.section.formvalue(section_id, 'min_lifetime') || '120',
			    max = value || '86400';

			if (+max < +min)
				return _('The longest lifetime must not be shorter than the shortest one');

			return true;
		};

		o = s.taboption('limits', form.Value, 'max_per_host', _('Pinholes per host'),
			_('The most pinholes one host on the LAN may hold.'));
		o.datatype = 'min(1)';
		o.placeholder = '64';

		o = s.taboption('limits', form.Value, 'max_leases', _('Pinholes in total'),
			_('The most pinholes of all hosts together.'));
		o.datatype = 'min(1)';
		o.placeholder = '4096';

		o = s.taboption('limits', form.DynamicList, 'reserved_ports', _('Reserved ports'),
			_('External ports never handed out, whatever the rules allow, because the router serves them itself: 22/tcp, 53 (both protocols) or 6000-6010/udp. "default" stands for 22/tcp 23/tcp 53 80/tcp 443/tcp 67/udp 68/udp 123/udp 1900/udp 5351/udp 5353/udp; "none" alone reserves nothing. Ports the router listens on are always refused as well.'));
		o.placeholder = 'default';
		o.validate = function(section_id, value) {
			if (value == null || value === '' || /^(default|none|\d+(-\d+)?(\/(tcp|udp))?)$/i.test(value))
				return true;

			return _('Expecting default, none, a port or a range, with /tcp or /udp if only one protocol');
		};

		o = s.taboption('limits', form.Value, 'rate_limit', _('Request rate'),
			_('Requests per second one host may send; more are dropped.'));
		o.datatype = 'ufloat';
		o.placeholder = '20';
		o.validate = function(section_id, value) {
			if (value == null || value === '' || +value > 0)
				return true;

			return _('Expecting a number above 0');
		};

		o = s.taboption('limits', form.Value, 'rate_burst', _('Request burst'),
			_('Requests a host may send at once above the rate.'));
		o.datatype = 'min(1)';
		o.placeholder = '40';

		o = s.taboption('auth', form.ListValue, 'auth', _('Authenticated requests'),
			_('Hosts that hold a client key (below) sign their PCP requests with it ("dpf --key-file"). Optional: signed requests get the rights rules give their key (the shipped rules: any port, well-known ones included), unsigned ones are served as before. Required: unsigned PCP mapping requests and every NAT-PMP mapping request are refused. Off: signed requests are refused as unsupported.'));
		o.value('off', _('off'));
		o.value('optional', _('optional'));
		o.value('required', _('required'));
		o.default = 'off';

		o = s.taboption('advanced', form.ListValue, 'log_level', _('Log level'),
			_('"debug" also logs every renewal.'));
		o.value('debug', _('Debug'));
		o.value('info', _('Info'));
		o.value('warn', _('Warning'));
		o.value('error', _('Error'));
		o.default = 'info';

		o = s.taboption('advanced', form.ListValue, 'dbus', _('D-Bus interface'),
			_('Offers the status, the pinholes and their changes on the system bus (name org.dpf.Router). Automatic: when there is a bus, retrying quietly when there is none.'));
		o.value('auto', _('automatic'));
		o.value('1', _('required'));
		o.value('0', _('off'));
		o.default = 'auto';

		o = s.taboption('advanced', form.Value, 'dbus_address', _('D-Bus address'),
			_('The bus to use. Empty: the system bus.'));
		o.placeholder = 'unix:path=/var/run/dbus/system_bus_socket';
		o.depends({ dbus: '0', '!reverse': true });
		o.validate = function(section_id, value) {
			if (value == null || value === '' || /^([a-z0-9-]+:[^;\s]*;?)+$/i.test(value))
				return true;

			return _('Expecting a D-Bus address like unix:path=/var/run/dbus/system_bus_socket');
		};

		o = s.taboption('advanced', form.Value, 'checkpoint_interval', _('Checkpoint interval'),
			_('Seconds the stored expiry of a renewed pinhole may lag behind, to spare the flash; 0 writes every renewal.'));
		o.datatype = 'uinteger';
		o.placeholder = '300';

		o = s.taboption('advanced', form.Value, 'db', _('Lease database'),
			_('Kept across restarts. Changing it restarts dpfd.'));
		o.placeholder = '/etc/dpf/leases.db';
		o.validate = validatePath;

		o = s.taboption('advanced', form.Value, 'socket', _('Control socket'),
			_('Used by the dpfd command line and by this page. Changing it restarts dpfd.'));
		o.placeholder = '/var/run/dpfd.sock';
		o.validate = validatePath;

		s = m.section(form.GridSection, 'rule', _('Rules'),
			_('Which requests are granted. The rules are checked from the top, the first that matches decides, and a request that matches none is refused. Without any rule, hosts on the LAN may map their own ports 1024-65535 to external ports 1024-65535.'));
		s.anonymous = true;
		s.addremove = true;
		s.sortable = true;
		s.nodescriptions = true;

		o = s.option(form.Value, 'name', _('Name'), _('Shown in the log.'));
		o.placeholder = _('(section name)');

		o = s.option(form.ListValue, 'action', _('Action'));
		o.value('allow', _('Allow'));
		o.value('deny', _('Deny'));
		o.default = 'allow';
		o.rmempty = false;

		o = s.option(form.DynamicList, 'int_addr', _('Internal addresses'),
			_('Addresses or prefixes the pinhole may lead to; "lan" means the subnets of the LAN interfaces. Empty: any.'));
		o.datatype = 'or(ipaddr, "lan")';
		o.placeholder = 'lan';

		o = s.option(form.DynamicList, 'client', _('Requesting hosts'),
			_('Addresses or prefixes of the hosts the rule applies to. Empty: any.'));
		o.datatype = 'ipaddr';
		o.modalonly = true;

		o = s.option(form.Value, 'int_ports', _('Internal ports'));
		o.placeholder = 'any';
		o.validate = validatePorts;

		o = s.option(form.Value, 'ext_ports', _('External ports'),
			_('A requested port outside these, or taken, gets another allowed port.'));
		o.placeholder = 'any';
		o.validate = validatePorts;

		o = s.option(form.ListValue, 'proto', _('Protocol'));
		o.value('any', _('TCP and UDP'));
		o.value('tcp', 'TCP');
		o.value('udp', 'UDP');
		o.default = 'any';

		o = s.option(form.Flag, 'third_party', _('Third party'),
			_('Lets the hosts ask for pinholes to other addresses (PCP THIRD_PARTY).'));
		o.default = o.disabled;

		o = s.option(form.DynamicList, 'auth', _('Client keys'),
			_('The rule applies only to requests signed with one of these keys, or with any key ("any"). Empty: to every request, signed or not.'));
		o.validate = validateKeyRef;
		o.modalonly = true;

		s = m.section(form.GridSection, 'key', _('Client keys'),
			_('Keys that hosts on the LAN sign their requests with, when authenticated requests are on. The name is used in rules and shown with each pinhole. Give each host its own key: copy the secret to a file only its user can read and run "dpf --key-file FILE". A new key gets a random secret.'));
		s.anonymous = false;
		s.addremove = true;
		s.nodescriptions = true;

		o = s.option(form.Value, 'secret', _('Secret'),
			_('64 hex digits or the base64 of 32 bytes ("dpfd genkey" prints one).'));
		o.password = true;
		o.modalonly = true; /* never shown in the table */
		o.rmempty = false;
		o.validate = validateSecret;
		/* A new section shows a random secret, which must be written
		 * even though it equals what cfgvalue returns. */
		o.forcewrite = true;
		o.cfgvalue = function(section_id) {
			var v = uci.get('dpf', section_id, 'secret');

			if (v != null && v !== '')
				return v;
			if (keyCache[section_id] == null)
				keyCache[section_id] = randomKey();

			return keyCache[section_id];
		};

		o = s.option(form.DynamicList, 'address', _('Allowed from'),
			_('Addresses or prefixes the key may be used from. Empty: any.'));
		o.datatype = 'ipaddr';

		return m.render();
	}
});
