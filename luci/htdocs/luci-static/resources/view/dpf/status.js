'use strict';
'require view';
'require dom';
'require poll';
'require rpc';
'require ui';

/*
 * Status of dpfd: its state and the live list of pinholes (leases), each
 * with a Delete button that closes it at once.
 *
 * The data comes from the "dpf" ubus object (dpfd's rpcd plugin). Each of
 * its methods answers either its result or {"error": "..."} when dpfd is
 * not running; a ubus or access failure rejects (reject: true), and both
 * end up in the same notice at the top of the page.
 *
 * Delete is offered only to a session that may call dpf delete (see
 * callSessionAccess); for others the button is disabled, as LuCI disables
 * the controls of a read-only view.
 *
 * Text that comes from the router (descriptions set by LAN hosts, host
 * names) is always passed to E() inside an array, so that it becomes a text
 * node: a bare string child is set as innerHTML.
 */

var callStatus = rpc.declare({
	object: 'dpf',
	method: 'status',
	reject: true
});

var callLeases = rpc.declare({
	object: 'dpf',
	method: 'leases',
	reject: true
});

var callDelete = rpc.declare({
	object: 'dpf',
	method: 'delete',
	params: [ 'proto', 'ext_port' ],
	reject: true
});

/* Whether this session may call dpf delete: rpcd's answer for the ubus
 * ACL entry (scope "ubus", object "dpf", function "delete"), which is
 * what uhttpd checks before it passes the call on. Write access to either
 * ACL group that grants it (luci-app-dpf of this app, dpf-write of the
 * dpf package) is enough. */
var callSessionAccess = rpc.declare({
	object: 'session',
	method: 'access',
	params: [ 'scope', 'object', 'function' ],
	expect: { access: false }
});

/* Host names of the LAN hosts, as the Status > Overview page shows them. */
var callDHCPLeases = rpc.declare({
	object: 'luci-rpc',
	method: 'getDHCPLeases',
	expect: { dhcp_leases: [] }
});

/* Seconds between refreshes of the status and the leases. */
var refreshInterval = 5;

/* errorText returns the first line of an error (LuCI appends a stack). */
function errorText(err) {
	var s = (err && err.message != null) ? err.message : String(err);
	return s.split(/\n/)[0];
}

/* failed turns a rejected call into the shape dpfd uses for errors. */
function failed(err) {
	return { error: errorText(err) };
}

/* isCGN reports whether addr is in 100.64.0.0/10, the shared address space
 * of carrier-grade NAT (RFC 6598). */
function isCGN(addr) {
	var m = /^(\d{1,3})\.(\d{1,3})\.\d{1,3}\.\d{1,3}$/.exec(addr || '');
	return m != null && +m[1] == 100 && (+m[2] & 0xc0) == 64;
}

/* The counters dpfd reports (control.CounterNames in src/control/types.go;
 * src/systest/luci_test.go checks that each has a label here), in the
 * order shown. Counters of a newer dpfd follow by name. */
var counterLabels = [
	[ 'requests',          _('Requests received') ],
	[ 'pcp',               _('PCP requests') ],
	[ 'natpmp',            _('NAT-PMP requests') ],
	[ 'answered',          _('Requests answered') ],
	[ 'error_responses',   _('Error responses') ],
	[ 'refused',           _('Requests refused') ],
	[ 'dropped',           _('Requests dropped') ],
	[ 'rate_limited',      _('Requests over the rate limit') ],
	[ 'created',           _('Pinholes opened') ],
	[ 'renewed',           _('Pinholes renewed') ],
	[ 'deleted',           _('Pinholes deleted') ],
	[ 'expired',           _('Pinholes expired') ],
	[ 'firewall_failures', _('Firewall failures') ],
	[ 'store_failures',    _('Lease database failures') ],
	[ 'firewall_repairs',  _('Firewall repairs (missing pinholes restored)') ]
];

/* timeLeft formats the seconds from now until deadline, as LuCI's '%t'. */
function timeLeft(deadline, now) {
	var s = Math.max(0, Math.floor((deadline - now) / 1000));
	return s > 0 ? '%t'.format(s) : _('expiring');
}

function originLabel(origin) {
	switch (origin) {
	case 'pcp':    return _('PCP');
	case 'natpmp': return _('NAT-PMP');
	}
	return origin || '';
}

/* viaLabel says how a lease was made: the protocol and, for a request
 * signed with a client key (dpfd's option auth), the key's name. */
function viaLabel(lease) {
	var s = originLabel(lease.origin);
	if (lease.auth)
		s += ', ' + _('key %s').format(lease.auth);
	return s;
}

return view.extend({
	/* Deadlines (ms since the epoch) of the shown leases, by key. */
	deadlines: {},

	/* Number of the latest refresh; older answers are dropped. */
	seq: 0,

	/* Whether this session may delete leases (callSessionAccess). */
	canDelete: false,

	load: function() {
		return Promise.all([
			this.fetch(),
			/* Unanswered (rpcd down, say), it leaves Delete off. */
			L.resolveDefault(callSessionAccess('ubus', 'dpf', 'delete'), false)
		]).then(L.bind(function(res) {
			this.canDelete = (res[1] === true);
			return res[0];
		}, this));
	},

	fetch: function() {
		return Promise.all([
			callStatus().catch(failed),
			callLeases().catch(failed),
			L.resolveDefault(callDHCPLeases(), [])
		]);
	},

	refresh: function() {
		var seq = ++this.seq;

		return this.fetch().then(L.bind(function(data) {
			if (seq == this.seq)
				this.update(data);
		}, this));
	},

	handleDelete: function(lease, ev) {
		var btn = ev.currentTarget,
		    row = dom.parent(btn, 'tr');

		if (!this.canDelete)
			return;

		btn.disabled = true;
		btn.classList.add('spinning');
		btn.blur();
		if (row)
			row.style.opacity = 0.5;

		return callDelete(lease.proto, lease.ext_port).then(function(res) {
			if (res && res.error)
				throw new Error(res.error);
		}).catch(function(err) {
			ui.addNotification(null, E('p', [
				_('Could not delete the pinhole %s port %d: %s').format(
					String(lease.proto).toUpperCase(), lease.ext_port, errorText(err))
			]), 'danger');
		}).then(L.bind(this.refresh, this));
	},

	/* tick updates the countdown of every lease. */
	tick: function() {
		var now = Date.now(), deadlines = this.deadlines;

		document.querySelectorAll('#dpf-leases [data-lease]').forEach(function(row) {
			var cell = row.querySelector('.dpf-time-left'),
			    deadline = deadlines[row.getAttribute('data-lease')];

			if (cell && deadline != null)
				dom.content(cell, [ timeLeft(deadline, now) ]);
		});
	},

	renderStatus: function(st, err) {
		var addr = st.external_address, addrCell;

		if (err)
			addrCell = [ '-' ];
		else if (!addr)
			addrCell = [ E('em', [ _('none: the WAN interface has no IPv4 address') ]) ];
		else if (isCGN(addr))
			addrCell = [
				addr, ' ',
				E('span', { 'class': 'label warning', 'id': 'dpf-cgn' }, [ _('carrier-grade NAT') ]),
				E('div', { 'class': 'cbi-value-description' }, [
					_('This address is in 100.64.0.0/10, the range of carrier-grade NAT: your provider translates it again, so hosts on the internet cannot reach the pinholes opened here unless the provider forwards the ports too.')
				])
			];
		else
			addrCell = [ addr ];

		var lans = Array.isArray(st.lan_interfaces) ? st.lan_interfaces.join(', ') : '';
		if (Array.isArray(st.lan_subnets) && st.lan_subnets.length)
			lans += ' (' + st.lan_subnets.join(', ') + ')';

		var rows = [
			[ 'external_address', _('External address'), addrCell ],
			[ 'backend', _('Firewall backend'), [ st.backend || '-' ] ],
			[ 'leases', _('Pinholes'), [ (st.leases != null)
				? _('%d of at most %d').format(st.leases, st.max_leases) : '-' ] ],
			[ 'wan_interface', _('WAN interface'), [ st.wan_interface || '-' ] ],
			[ 'lan_interfaces', _('LAN interfaces'), [ lans || '-' ] ],
			[ 'listening', _('Listening on'), [ Array.isArray(st.listening) ? st.listening.join(', ') : '-' ] ],
			[ 'uptime', _('Running for'), [ (st.uptime_seconds != null) ? '%t'.format(st.uptime_seconds) : '-' ] ],
			[ 'version', _('Version'), [ st.version || '-' ] ]
		];

		return E('table', { 'class': 'table' }, rows.map(function(r) {
			return E('tr', { 'class': 'tr' }, [
				E('td', { 'class': 'td left', 'width': '33%' }, [ r[1] ]),
				E('td', { 'class': 'td left', 'data-name': r[0] }, r[2])
			]);
		}));
	},

	renderCounters: function(st) {
		var counters = L.isObject(st.counters) ? st.counters : {},
		    known = {}, rows = [];

		counterLabels.forEach(function(c) {
			known[c[0]] = true;
			if (counters[c[0]] != null)
				rows.push(c);
		});
		Object.keys(counters).sort().forEach(function(name) {
			if (!known[name])
				rows.push([ name, name ]);
		});

		if (!rows.length)
			return E('em', [ _('No counters.') ]);

		return E('table', { 'class': 'table' }, rows.map(function(c) {
			var name = c[0];
			return E('tr', { 'class': 'tr' }, [
				E('td', { 'class': 'td left', 'width': '33%' }, [ c[1] ]),
				E('td', { 'class': 'td left', 'data-name': name }, [ String(counters[name]) ])
			]);
		}));
	},

	renderLeases: function(leases, hosts, err) {
		var now = Date.now(), deadlines = {};

		var rows = leases.slice().sort(function(a, b) {
			return String(a.int_addr).localeCompare(String(b.int_addr), undefined, { numeric: true }) ||
				(a.ext_port - b.ext_port) ||
				String(a.proto).localeCompare(String(b.proto));
		}).map(L.bind(function(lease) {
			var key = lease.proto + '/' + lease.ext_port,
			    host = hosts[lease.client];

			deadlines[key] = now + (+lease.expires_in || 0) * 1000;

			return E('tr', { 'class': 'tr', 'data-lease': key }, [
				E('td', { 'class': 'td', 'data-title': _('Client'), 'data-col': 'client' },
					host ? [ host, E('br'), E('small', [ lease.client ]) ] : [ lease.client ]),
				E('td', { 'class': 'td', 'data-title': _('Internal address'), 'data-col': 'internal' },
					[ lease.int_addr + ':' + lease.int_port ]),
				E('td', { 'class': 'td', 'data-title': _('External port'), 'data-col': 'ext_port' },
					[ String(lease.ext_port) ]),
				E('td', { 'class': 'td', 'data-title': _('Protocol'), 'data-col': 'proto' },
					[ String(lease.proto).toUpperCase() ]),
				E('td', { 'class': 'td', 'data-title': _('Description'), 'data-col': 'description' }, [
					lease.description || '',
					E('br'),
					E('small', [ viaLabel(lease) ])
				]),
				E('td', { 'class': 'td dpf-time-left', 'data-title': _('Time left'), 'data-col': 'time_left' },
					[ timeLeft(deadlines[key], now) ]),
				E('td', { 'class': 'td cbi-section-actions' }, [
					E('button', {
						'class': 'btn cbi-button cbi-button-remove',
						'title': this.canDelete ? _('Close this pinhole now') : _('This login may not delete pinholes'),
						'disabled': this.canDelete ? null : true,
						'click': L.bind(this.handleDelete, this, lease)
					}, [ _('Delete') ])
				])
			]);
		}, this));

		this.deadlines = deadlines;

		if (!rows.length)
			rows.push(E('tr', { 'class': 'tr placeholder' }, [
				E('td', { 'class': 'td', 'colspan': 7 }, [
					E('em', [ err ? _('No data.') : _('There are no open pinholes.') ])
				])
			]));

		return [
			E('tr', { 'class': 'tr table-titles' }, [
				E('th', { 'class': 'th' }, [ _('Client') ]),
				E('th', { 'class': 'th' }, [ _('Internal address') ]),
				E('th', { 'class': 'th' }, [ _('External port') ]),
				E('th', { 'class': 'th' }, [ _('Protocol') ]),
				E('th', { 'class': 'th' }, [ _('Description') ]),
				E('th', { 'class': 'th' }, [ _('Time left') ]),
				E('th', { 'class': 'th cbi-section-actions' }, [])
			])
		].concat(rows);
	},

	renderError: function(err) {
		if (!err)
			return [];

		return E('div', { 'class': 'alert-message warning' }, [
			E('strong', [ _('The DPF daemon (dpfd) does not answer:') ]), ' ', err, E('br'),
			_('Start the service dpf under System > Startup (or run /etc/init.d/dpf start); if it stops again, the system log says why.')
		]);
	},

	/* update shows a fresh [status, leases, dhcp leases] answer in the
	 * containers under root (default: the document). */
	update: function(data, root) {
		var st = L.isObject(data[0]) ? data[0] : {},
		    ls = L.isObject(data[1]) ? data[1] : {},
		    err = st.error || ls.error || null,
		    leases = Array.isArray(ls.leases) ? ls.leases : [],
		    hosts = {};

		(Array.isArray(data[2]) ? data[2] : []).forEach(function(l) {
			if (l.ipaddr && l.hostname)
				hosts[l.ipaddr] = l.hostname;
		});

		root = root || document;
		dom.content(root.querySelector('#dpf-error'), this.renderError(err));
		dom.content(root.querySelector('#dpf-status'), this.renderStatus(err ? {} : st, err));
		dom.content(root.querySelector('#dpf-leases'), this.renderLeases(leases, hosts, err));
		dom.content(root.querySelector('#dpf-counters'), this.renderCounters(err ? {} : st));
	},

	render: function(data) {
		var node = E([], [
			E('h2', [ _('DPF port forwarding') ]),
			E('div', { 'class': 'cbi-map-descr' }, [
				_('Pinholes that hosts on the LAN opened with PCP or NAT-PMP. Each stays open while its host renews it; Delete closes it at once.')
			]),
			E('div', { 'id': 'dpf-error' }),
			E('div', { 'class': 'cbi-section' }, [
				E('h3', [ _('Service') ]),
				E('div', { 'id': 'dpf-status' })
			]),
			E('div', { 'class': 'cbi-section' }, [
				E('h3', [ _('Open pinholes') ]),
				this.canDelete ? '' : E('div', { 'class': 'cbi-section-descr', 'id': 'dpf-readonly' }, [
					_('This login may view the pinholes but not delete them.')
				]),
				E('table', { 'class': 'table cbi-section-table', 'id': 'dpf-leases' })
			]),
			E('div', { 'class': 'cbi-section' }, [
				E('h3', [ _('Counters') ]),
				E('div', { 'id': 'dpf-counters' })
			])
		]);

		/* The view is not in the document yet: fill the new tree. */
		this.update(data, node);

		poll.add(L.bind(this.refresh, this), refreshInterval);
		poll.add(L.bind(this.tick, this), 1);

		return node;
	},

	handleSaveApply: null,
	handleSave: null,
	handleReset: null
});
