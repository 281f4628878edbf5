#!/usr/bin/env node
// pot.mjs makes luci-app-dpf's translation template, luci/po/templates/dpf.pot,
// from the strings LuCI translates: the literal arguments of _() in the views
// (htdocs/**/*.js), the "title" of each menu entry (root/usr/share/luci/
// menu.d/*.json) and the "description" of each ACL group (root/usr/share/
// rpcd/acl.d/*.json), as LuCI's own i18n scanner collects them.
//
//   node luci/test/pot.mjs            print the template
//   node luci/test/pot.mjs --write    write luci/po/templates/dpf.pot
//   node luci/test/pot.mjs --check    exit 1 if the file differs from what
//                                     would be written, or a view does not
//                                     compile as LuCI compiles it
//
// Only string literals are collected; _() of anything else (a variable,
// concatenation with a non-literal) is an error, since no catalogue could
// hold it.

import { readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const app = join(dirname(fileURLToPath(import.meta.url)), '..');
const repo = join(app, '..');
const potPath = join(app, 'po', 'templates', 'dpf.pot');

function walk(dir, suffix) {
	let out = [];
	for (const name of readdirSync(dir).sort()) {
		const p = join(dir, name);
		if (statSync(p).isDirectory())
			out = out.concat(walk(p, suffix));
		else if (name.endsWith(suffix))
			out.push(p);
	}
	return out;
}

// readString reads the JS string literal starting at src[i] (a quote) and
// returns [value, index after it].
function readString(src, i) {
	const q = src[i];
	let s = '';
	for (i++; i < src.length; i++) {
		const c = src[i];
		if (c === q)
			return [s, i + 1];
		if (c === '\n' && q !== '`')
			break;
		if (q === '`' && c === '$' && src[i + 1] === '{')
			throw new Error('template literal with ${} in _()');
		if (c !== '\\') {
			s += c;
			continue;
		}
		const e = src[++i];
		const simple = { n: '\n', t: '\t', r: '\r', b: '\b', f: '\f', v: '\v', 0: '\0' };
		if (e in simple)
			s += simple[e];
		else if (e === 'x') {
			s += String.fromCharCode(parseInt(src.substr(i + 1, 2), 16));
			i += 2;
		} else if (e === 'u') {
			s += String.fromCharCode(parseInt(src.substr(i + 1, 4), 16));
			i += 4;
		} else if (e === '\n')
			continue;
		else
			s += e;
	}
	throw new Error('unterminated string');
}

const skipSpace = (src, i) => {
	while (i < src.length && /\s/.test(src[i]))
		i++;
	return i;
};

// scanJS returns [msgid, line] for each _('...') call in src.
function scanJS(src, file) {
	const found = [];
	const re = /(^|[^\w$.])_\(/g;
	let m;
	while ((m = re.exec(src)) !== null) {
		const at = m.index + m[1].length;
		const line = src.slice(0, at).split('\n').length;
		let i = skipSpace(src, at + 2), msgid = '';
		try {
			for (;;) {
				if (!`'"\``.includes(src[i]))
					throw new Error('argument is not a string literal');
				const [s, next] = readString(src, i);
				msgid += s;
				i = skipSpace(src, next);
				if (src[i] !== '+')
					break;
				i = skipSpace(src, i + 1);
			}
			if (src[i] !== ')' && src[i] !== ',')
				throw new Error('argument is not a string literal');
		} catch (err) {
			throw new Error(`${file}:${line}: _(): ${err.message}`);
		}
		found.push([msgid, line]);
	}
	return found;
}

// scanJSON returns [value, line] for each "key": "value" in a JSON file.
function scanJSON(src, key) {
	const found = [];
	const re = new RegExp(`"${key}"\\s*:\\s*("(?:[^"\\\\]|\\\\.)*")`, 'g');
	let m;
	while ((m = re.exec(src)) !== null)
		found.push([JSON.parse(m[1]), src.slice(0, m.index).split('\n').length]);
	return found;
}

function poString(s) {
	return s.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n').replace(/\t/g, '\\t');
}

// poField writes `msgid "..."`, wrapped at 80 columns after spaces the way
// gettext's tools (and LuCI's templates) do.
function poField(name, s) {
	const esc = poString(s);
	if (name.length + esc.length + 3 <= 80 && !esc.includes('\\n'))
		return `${name} "${esc}"\n`;
	const words = esc.match(/[^ ]+ *| +/g) ?? [''];
	const lines = [];
	let cur = '';
	for (const w of words) {
		if (cur && cur.length + w.length > 77) {
			lines.push(cur);
			cur = '';
		}
		cur += w;
	}
	if (cur)
		lines.push(cur);
	return `${name} ""\n` + lines.map((l) => `"${l}"\n`).join('');
}

export function template() {
	const entries = new Map();
	const add = (msgid, ref) => {
		if (msgid === '')
			return;
		if (!entries.has(msgid))
			entries.set(msgid, []);
		entries.get(msgid).push(ref);
	};
	const rel = (p) => relative(repo, p);

	for (const f of walk(join(app, 'htdocs'), '.js'))
		for (const [s, line] of scanJS(readFileSync(f, 'utf8'), rel(f)))
			add(s, `${rel(f)}:${line}`);
	for (const f of walk(join(app, 'root', 'usr', 'share', 'luci', 'menu.d'), '.json'))
		for (const [s, line] of scanJSON(readFileSync(f, 'utf8'), 'title'))
			add(s, `${rel(f)}:${line}`);
	for (const f of walk(join(app, 'root', 'usr', 'share', 'rpcd', 'acl.d'), '.json'))
		for (const [s, line] of scanJSON(readFileSync(f, 'utf8'), 'description'))
			add(s, `${rel(f)}:${line}`);

	let out = 'msgid ""\nmsgstr "Content-Type: text/plain; charset=UTF-8"\n';
	const ids = [...entries.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
	for (const id of ids) {
		out += '\n';
		for (const ref of entries.get(id))
			out += `#: ${ref}\n`;
		out += poField('msgid', id);
		out += 'msgstr ""\n';
	}
	return out;
}

// compileViews compiles every view the way LuCI does: as the body of a
// function of (window, document, L, <required classes>).
function compileViews() {
	const bad = [];
	for (const f of walk(join(app, 'htdocs'), '.js')) {
		try {
			new Function('window', 'document', 'L', readFileSync(f, 'utf8'));
		} catch (err) {
			bad.push(`${relative(repo, f)}: ${err.message}`);
		}
	}
	return bad;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
	const mode = process.argv[2] ?? '';
	try {
		const pot = template();
		if (mode === '--write') {
			writeFileSync(potPath, pot);
		} else if (mode === '--check') {
			const problems = compileViews();
			let have = '';
			try {
				have = readFileSync(potPath, 'utf8');
			} catch (err) {
				problems.push(`${relative(repo, potPath)}: ${err.message}`);
			}
			if (have !== pot)
				problems.push(`${relative(repo, potPath)} is out of date: run node luci/test/pot.mjs --write`);
			if (problems.length) {
				console.error(problems.join('\n'));
				process.exit(1);
			}
		} else if (mode === '') {
			process.stdout.write(pot);
		} else {
			console.error('usage: node pot.mjs [--write | --check]');
			process.exit(2);
		}
	} catch (err) {
		console.error(`pot.mjs: ${err.message}`);
		process.exit(1);
	}
}
