/*
 * luci-shim.js: a stand-in for the parts of LuCI's client runtime (luci.js,
 * rpc.js, ui.js) that luci-app-dpf's status view uses, so that the view's
 * file runs unchanged in a browser without an OpenWrt router behind it.
 *
 * It follows LuCI's documented client API (https://openwrt.github.io/luci/jsapi/)
 * and its behaviour where a view can tell the difference:
 *
 *  - L.require('view.dpf.status') fetches <base_url>/view/dpf/status.js,
 *    reads its leading 'require NAME' / 'require NAME as ALIAS' directives,
 *    evaluates the file as the body of
 *    function(window, document, L, <required classes...>) and instantiates
 *    the class it returns; a view's constructor loads, renders and fills
 *    #view (view.extend, load(), render(), addFooter()).
 *  - E() / dom.create, dom.append, dom.content: an array child becomes text
 *    nodes, a bare string child is assigned to innerHTML (as in LuCI).
 *  - rpc.declare: a ubus JSON-RPC "call" POSTed to env.ubuspath with the
 *    session env.sessionid; params, expect, filter and reject as
 *    documented; a JSON-RPC error (such as uhttpd's "Access denied")
 *    rejects. LuCI's server writes the login's session into the page's
 *    env; the harness page sets env.sessionid from its ?session=, and
 *    the test's server answers for that session as uhttpd and rpcd do
 *    (its ACL, and "session" "access" for what a view may call).
 *  - poll.add(fn, seconds): one loop ticking every second, fn runs on every
 *    tick divisible by its interval (tick 0 included) and never twice at once.
 *  - ui.addNotification, String.prototype.format (%s %d %f %x %t %h %q %%),
 *    _() (no catalogue: the source string), L.bind, L.resolveDefault.
 *
 * Not provided: form, uci, network and the rest; a view that requires them
 * fails with a clear error.
 */
(function(window, document) {
	'use strict';

	var env = {
		base_url: '/luci-static/resources',
		resource: '/luci-static/resources',
		ubuspath: '/ubus/',
		sessionid: '00000000000000000000000000000000',
		rpctimeout: 20,
		pollinterval: 5
	};

	/* String.prototype.format: the conversions LuCI views use. */
	function formatTime(secs) {
		var ts = Math.floor(+secs || 0), tm = 0, th = 0, td = 0;

		if (ts > 59) { tm = Math.floor(ts / 60); ts = ts % 60; }
		if (tm > 59) { th = Math.floor(tm / 60); tm = tm % 60; }
		if (th > 23) { td = Math.floor(th / 24); th = th % 24; }

		return (td > 0)
			? td + 'd ' + th + 'h ' + tm + 'm ' + ts + 's'
			: th + 'h ' + tm + 'm ' + ts + 's';
	}

	function escapeHTML(s) {
		return String(s).replace(/&/g, '&#38;').replace(/"/g, '&#34;').replace(/'/g, '&#39;')
			.replace(/</g, '&#60;').replace(/>/g, '&#62;');
	}

	String.prototype.format = function() {
		var args = arguments, n = 0;

		return String(this).replace(/%(?:\.(\d+))?([sdfxXthq%])/g, function(m, prec, conv) {
			if (conv == '%')
				return '%';

			var v = args[n++];

			switch (conv) {
			case 's': return (v == null || typeof(v) == 'object' || typeof(v) == 'function') ? '' : String(v);
			case 'd': return Math.floor(+v || 0).toFixed(0);
			case 'f': return (prec != null) ? (+v || 0).toFixed(+prec) : String(+v || 0);
			case 'x': return Math.floor(+v || 0).toString(16);
			case 'X': return Math.floor(+v || 0).toString(16).toUpperCase();
			case 't': return formatTime(v);
			case 'h': return escapeHTML(v == null ? '' : v);
			case 'q': return escapeHTML(v == null ? '' : v).replace(/&#39;/g, "'");
			}
		});
	};

	/* Classes: extend() makes a subclass whose constructor calls __init__. */
	var Class = function() {};

	Class.extend = function(props) {
		var Parent = this;
		var Sub = function() {
			if (typeof(this.__init__) == 'function')
				this.__init__.apply(this, arguments);
		};

		Sub.prototype = Object.create(Parent.prototype);
		Object.keys(props || {}).forEach(function(k) { Sub.prototype[k] = props[k]; });
		Sub.prototype.constructor = Sub;
		Sub.extend = Class.extend;
		Sub.singleton = Class.singleton;
		Sub.isSubclass = Class.isSubclass;

		return Sub;
	};

	Class.singleton = function(props) {
		return new (this.extend(props))();
	};

	Class.isSubclass = function(C) {
		return typeof(C) == 'function' && C.prototype instanceof this;
	};

	var dom = {
		elem: function(e) {
			return (e != null && typeof(e) == 'object' && 'nodeType' in e);
		},

		parse: function(s) {
			return new DOMParser().parseFromString(s, 'text/html').body.firstChild;
		},

		matches: function(node, selector) {
			return this.elem(node) && node.matches ? node.matches(selector) : false;
		},

		parent: function(node, selector) {
			return (this.elem(node) && node.closest) ? node.closest(selector) : null;
		},

		append: function(node, children) {
			if (!this.elem(node))
				return null;

			if (Array.isArray(children)) {
				for (var i = 0; i < children.length; i++)
					if (this.elem(children[i]))
						node.appendChild(children[i]);
					else
						node.appendChild(document.createTextNode(String(children[i])));

				return node.lastChild;
			}
			else if (typeof(children) == 'function') {
				return this.append(node, children(node));
			}
			else if (this.elem(children)) {
				return node.appendChild(children);
			}
			else if (children != null) {
				node.innerHTML = String(children);
				return node.lastChild;
			}

			return null;
		},

		content: function(node, children) {
			if (!this.elem(node))
				return null;

			while (node.firstChild)
				node.removeChild(node.firstChild);

			return this.append(node, children);
		},

		attr: function(node, key, val) {
			var attrs = {};

			if (!this.elem(node))
				return null;

			if (typeof(key) == 'object' && key !== null)
				attrs = key;
			else if (typeof(key) == 'string')
				attrs[key] = val;

			for (var k in attrs) {
				if (!Object.prototype.hasOwnProperty.call(attrs, k) || attrs[k] == null)
					continue;

				if (typeof(attrs[k]) == 'function')
					node.addEventListener(k, attrs[k]);
				else if (typeof(attrs[k]) == 'object')
					node.setAttribute(k, JSON.stringify(attrs[k]));
				else
					node.setAttribute(k, attrs[k]);
			}
		},

		create: function(html, attr, data) {
			var elem;

			if (!(attr instanceof Object) || Array.isArray(attr))
				data = attr, attr = null;

			if (Array.isArray(html)) {
				elem = document.createDocumentFragment();
				for (var i = 0; i < html.length; i++)
					elem.appendChild(this.create(html[i]));
			}
			else if (this.elem(html))
				elem = html;
			else if (html.charCodeAt(0) == 60)
				elem = this.parse(html);
			else
				elem = document.createElement(html);

			if (!elem)
				return null;

			this.attr(elem, attr);
			this.append(elem, data);

			return elem;
		}
	};

	var L;

	function raise(type, fmt) {
		var msg = fmt ? String.prototype.format.apply(fmt, Array.prototype.slice.call(arguments, 2)) : 'Unspecified error';
		var e = new Error(msg);
		e.name = type || 'Error';
		throw e;
	}

	function error(type, fmt) {
		try {
			if (type instanceof Error)
				throw type;
			raise.apply(null, arguments);
		}
		catch (e) {
			if (!e.reported) {
				ui.addNotification(e.name || _('Runtime error'), E('pre', {}, [ e.message ]), 'danger');
				e.reported = true;
			}
			throw e;
		}
	}

	var poll = {
		queue: [],
		tick: 0,
		timer: null,

		add: function(fn, interval) {
			if (interval == null || interval <= 0)
				interval = env.pollinterval;

			if (isNaN(interval) || typeof(fn) != 'function')
				throw new TypeError('Invalid argument to poll.add()');

			for (var i = 0; i < this.queue.length; i++)
				if (this.queue[i].fn === fn)
					return false;

			this.queue.push({ fn: fn, i: +interval, r: true });

			if (!this.active())
				this.start();

			return true;
		},

		remove: function(fn) {
			var len = this.queue.length;
			this.queue = this.queue.filter(function(e) { return e.fn !== fn; });
			if (!this.queue.length)
				this.stop();
			return this.queue.length != len;
		},

		start: function() {
			if (this.active())
				return false;

			this.tick = 0;
			if (this.queue.length) {
				this.timer = window.setInterval(this.step, 1000);
				this.step();
			}
			return true;
		},

		stop: function() {
			if (!this.active())
				return false;

			window.clearInterval(this.timer);
			this.timer = null;
			return true;
		},

		step: function() {
			poll.queue.forEach(function(e) {
				if ((poll.tick % e.i) != 0 || !e.r)
					return;

				e.r = false;
				Promise.resolve().then(e.fn).catch(function(err) {
					console.error('poll function failed: ' + (err && err.message));
				}).then(function() { e.r = true; });
			});
			poll.tick = (poll.tick + 1) % Math.pow(2, 32);
		},

		active: function() {
			return this.timer != null;
		}
	};

	var rpcRequestID = 1;

	var rpc = {
		getStatusText: function(code) {
			switch (code) {
			case 0: return _('Command OK');
			case 1: return _('Invalid command');
			case 2: return _('Invalid argument');
			case 3: return _('Method not found');
			case 4: return _('Resource not found');
			case 5: return _('No data received');
			case 6: return _('Permission denied');
			case 7: return _('Request timeout');
			case 8: return _('Not supported');
			case 9: return _('Unspecified error');
			case 10: return _('Connection lost');
			}
			return _('Unknown error code');
		},

		getSessionID: function() { return env.sessionid; },
		getBaseURL: function() { return env.ubuspath; },

		handleReply: function(req, msg) {
			var ret = null, type = Object.prototype.toString;

			if (msg == null || typeof(msg) != 'object' || msg.jsonrpc != '2.0')
				raise('RPCError', 'RPC call to %s/%s returned invalid message frame', req.object, req.method);

			if (msg.error != null && typeof(msg.error) == 'object' && msg.error.code && msg.error.message)
				raise('RPCError', 'RPC call to %s/%s failed with error %d: %s',
					req.object, req.method, msg.error.code, msg.error.message);

			if (Array.isArray(msg.result)) {
				if (req.raise && msg.result[0] !== 0)
					raise('RPCError', 'RPC call to %s/%s failed with ubus code %d: %s',
						req.object, req.method, msg.result[0], this.getStatusText(msg.result[0]));

				ret = (msg.result.length > 1) ? msg.result[1] : msg.result[0];
			}

			if (req.expect) {
				for (var key in req.expect) {
					if (ret != null && key != '')
						ret = ret[key];

					if (ret == null || type.call(ret) != type.call(req.expect[key]))
						ret = req.expect[key];

					break;
				}
			}

			if (typeof(req.filter) == 'function') {
				req.priv[0] = ret;
				req.priv[1] = req.params;
				ret = req.filter.apply(this, req.priv);
			}

			return ret;
		},

		declare: function(options) {
			var self = this;

			return function() {
				var args = Array.prototype.slice.call(arguments), params = {}, p = 0;

				if (Array.isArray(options.params))
					for (p = 0; p < options.params.length; p++)
						params[options.params[p]] = args[p];

				var req = {
					expect: options.expect,
					filter: options.filter,
					params: params,
					priv: [ undefined, undefined ].concat(args.slice(p)),
					object: options.object,
					method: options.method,
					raise: options.reject
				};

				var msg = {
					jsonrpc: '2.0',
					id: rpcRequestID++,
					method: 'call',
					params: [ env.sessionid, options.object, options.method, params ]
				};

				var ctl = new AbortController(),
				    timer = window.setTimeout(function() { ctl.abort(); }, env.rpctimeout * 1000);

				return window.fetch(env.ubuspath, {
					method: 'POST',
					headers: { 'Content-Type': 'application/json' },
					body: JSON.stringify(msg),
					signal: ctl.signal
				}).then(function(res) {
					if (!res.ok)
						raise('RPCError', 'RPC call to %s/%s failed with HTTP error %d: %s',
							options.object, options.method, res.status, res.statusText || '?');
					return res.json();
				}).then(function(reply) {
					return self.handleReply(req, reply);
				}).finally(function() {
					window.clearTimeout(timer);
				});
			};
		}
	};

	var ui = {
		addNotification: function(title, children /*, classes... */) {
			var mc = document.getElementById('maincontent') || document.body,
			    body = E('div', { 'class': 'alert-body' }),
			    msg = E('div', { 'class': 'alert-message fade-in' }, [
				E('button', {
					'class': 'btn',
					'click': function(ev) { dom.parent(ev.target, '.alert-message').remove(); }
				}, [ _('Dismiss') ]),
				body
			]);

			if (title != null)
				dom.append(body, E('h4', {}, [ title ]));

			dom.append(body, children);

			for (var i = 2; i < arguments.length; i++)
				msg.classList.add(arguments[i]);

			mc.insertBefore(msg, mc.firstElementChild);
			return msg;
		},

		createHandlerFn: function(ctx, fn) {
			var args = Array.prototype.slice.call(arguments, 2);

			if (typeof(fn) == 'string')
				fn = ctx[fn];

			return function(ev) {
				var btn = ev.currentTarget;
				btn.classList.add('spinning');
				btn.disabled = true;
				return Promise.resolve(fn.apply(ctx, args.concat([ ev ]))).finally(function() {
					btn.classList.remove('spinning');
					btn.disabled = false;
				});
			};
		}
	};

	var View = Class.extend({
		__init__: function() {
			var vp = document.getElementById('view');

			dom.content(vp, E('div', { 'class': 'spinning' }, [ _('Loading view…') ]));

			return Promise.resolve(this.load())
				.then(L.bind(this.render, this))
				.then(L.bind(function(nodes) {
					dom.content(vp, nodes);
					dom.append(vp, this.addFooter());
				}, this)).catch(error);
		},

		load: function() {},
		render: function() {},
		handleSave: function() {},
		handleSaveApply: function() {},
		handleReset: function() {},

		addFooter: function() {
			var footer = E([]), buttons = [];

			if (this.handleSaveApply)
				buttons.push(E('button', { 'class': 'btn cbi-button cbi-button-apply' }, [ _('Save & Apply') ]));
			if (this.handleSave)
				buttons.push(E('button', { 'class': 'btn cbi-button cbi-button-save' }, [ _('Save') ]));
			if (this.handleReset)
				buttons.push(E('button', { 'class': 'btn cbi-button cbi-button-reset' }, [ _('Reset') ]));

			if (buttons.length)
				footer.appendChild(E('div', { 'class': 'cbi-page-actions' }, buttons));

			return footer;
		}
	});

	var classes = {
		baseclass: Class,
		dom: dom,
		poll: poll,
		rpc: rpc,
		ui: ui,
		view: View
	};

	/* scanRequires returns the [name, alias] pairs of the directive
	 * strings a class file starts with ('use strict', 'require x'). */
	function scanRequires(source) {
		var re = /^\s*(?:(?:\/\/[^\n]*\n|\/\*[\s\S]*?\*\/)\s*)*(['"])(.*?)\1\s*;?/,
		    deps = [], rest = source, m;

		while ((m = re.exec(rest)) != null) {
			var d = /^require[ \t]+(\S+)(?:[ \t]+as[ \t]+([a-zA-Z_]\S*))?$/.exec(m[2]);

			if (d)
				deps.push([ d[1], d[2] || d[1].replace(/[^a-zA-Z0-9_]/g, '_') ]);
			else if (!/^use[ \t]+strict$/.test(m[2]))
				break;

			rest = rest.substring(m[0].length);
		}

		return deps;
	}

	L = {
		env: env,
		loaded: true,

		bind: function(fn, self) {
			return Function.prototype.bind.apply(fn, [ self ].concat(Array.prototype.slice.call(arguments, 2)));
		},

		isObject: function(v) {
			return v != null && typeof(v) == 'object';
		},

		toArray: function(v) {
			if (v == null) return [];
			if (Array.isArray(v)) return v;
			var s = String(v).trim();
			return s ? s.split(/\s+/) : [];
		},

		resolveDefault: function(value, defvalue) {
			return Promise.resolve(value).catch(function() { return defvalue; });
		},

		raise: raise,
		error: error,

		resource: function() {
			return [ env.resource ].concat(Array.prototype.slice.call(arguments)).join('/');
		},

		require: function(name) {
			if (classes[name] != null)
				return Promise.resolve(classes[name]);

			var url = env.base_url + '/' + name.replace(/\./g, '/') + '.js';

			classes[name] = window.fetch(url).then(function(res) {
				if (!res.ok)
					raise('NetworkError', 'HTTP error %d while loading class file "%s"', res.status, url);
				return res.text();
			}).then(function(source) {
				var deps = scanRequires(source);

				return Promise.all(deps.map(function(d) {
					if (classes[d[0]] == null && !/^view\./.test(d[0]))
						raise('DependencyError', 'the test harness does not provide "%s" (required by %s)', d[0], name);
					return L.require(d[0]);
				})).then(function(instances) {
					var args = deps.map(function(d) { return d[1]; }).join(', '),
					    factory = (0, eval)('(function(window, document, L' + (args ? ', ' + args : '') + ') { ' +
							source + '\n})\n//# sourceURL=' + url + '\n'),
					    C = factory.apply(factory, [ window, document, L ].concat(instances));

					if (!Class.isSubclass(C))
						raise('TypeError', '"%s" factory yields invalid constructor', name);

					return (classes[name] = new C());
				});
			});

			return classes[name];
		}
	};

	window.L = L;
	window.E = function() { return dom.create.apply(dom, arguments); };
	window._ = function(s) { return s; };
	window.N_ = function(n, s, p) { return (n == 1) ? s : p; };
})(window, document);
