#!/usr/bin/env node
// run.mjs drives luci-app-dpf's status view in headless Chromium and prints
// what the page showed as one JSON object on stdout. The assertions are the
// caller's (src/systest/luci_test.go), which also serves the page and
// answers its ubus calls with the real dpfd.
//
//   node run.mjs --url URL [--expect-leases N]
//                [--delete PROTO/PORT | --try-delete PROTO/PORT]
//                [--expect-error] [--shot FILE] [--shot-after FILE]
//                [--chromium PATH] [--timeout MS]
//
// Steps: open URL; wait until the view shows the service status and
// exactly N leases (or, with --expect-error, the "daemon does not answer"
// notice); record the page (status, counters, lease rows); watch the
// countdown of the first lease for two seconds; screenshot to --shot; then
// with --delete click that lease's Delete button, wait until its row is
// gone, record the page again and screenshot to --shot-after. With
// --try-delete instead, click it as a script can even when it is disabled
// (element.click(), which a disabled button ignores), wait 2 s, and record
// the page again. The ubus calls the page made are in the output.
//
// Exit status: 0 when every step finished (the JSON then has ok: true), 1
// when one failed or timed out (the JSON says which, with what was seen so
// far), 2 on bad arguments. The browser only reaches 127.0.0.1: every
// other request is aborted and reported.

import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

// hardDeadline ends the run whatever happens (a hung browser included); the
// caller's own timeout is longer.
const hardDeadline = 120_000;

const chromiumArgs = [
	'--headless', '--no-sandbox', '--disable-gpu', '--disable-quic',
	'--no-first-run', '--disable-background-networking',
	'--disable-component-update', '--disable-sync',
];

let opt;
try {
	opt = parseArgs({
		options: {
			url: { type: 'string' },
			'expect-leases': { type: 'string' },
			delete: { type: 'string' },
			'try-delete': { type: 'string' },
			'expect-error': { type: 'boolean', default: false },
			shot: { type: 'string' },
			'shot-after': { type: 'string' },
			chromium: { type: 'string', default: '/usr/bin/chromium' },
			timeout: { type: 'string', default: '20000' },
		},
	}).values;
	if (!opt.url)
		throw new Error('--url is required');
	if (opt.delete && opt['try-delete'])
		throw new Error('--delete and --try-delete exclude each other');
} catch (err) {
	console.error(`run.mjs: ${err.message}`);
	process.exit(2);
}

const timeout = Number(opt.timeout);
const result = { ok: false, step: 'launch', errors: [], blocked: [], ubus: [] };

setTimeout(() => {
	result.failure = `gave up after ${hardDeadline} ms in step ${result.step}`;
	console.log(JSON.stringify(result, null, 1));
	process.exit(1);
}, hardDeadline).unref();

// snapshot runs in the page: what the status view shows.
function snapshot() {
	const text = (el) => (el ? el.textContent.replace(/\s+/g, ' ').trim() : null);
	const named = (sel) => {
		const out = {};
		document.querySelectorAll(`${sel} [data-name]`).forEach((td) => {
			out[td.getAttribute('data-name')] = text(td);
		});
		return out;
	};
	const rows = [...document.querySelectorAll('#dpf-leases tr[data-lease]')].map((tr) => {
		const row = { key: tr.getAttribute('data-lease') };
		tr.querySelectorAll('[data-col]').forEach((td) => {
			row[td.getAttribute('data-col')] = text(td);
		});
		const del = tr.querySelector('button.cbi-button-remove');
		row.delete = !del ? 'none' : del.disabled ? 'disabled' : 'enabled';
		return row;
	});
	// The label of each counter: the cell before its value.
	const counterLabels = {};
	document.querySelectorAll('#dpf-counters [data-name]').forEach((td) => {
		counterLabels[td.getAttribute('data-name')] = text(td.previousElementSibling);
	});
	return {
		title: text(document.querySelector('#view h2')),
		tabs: [...document.querySelectorAll('#tabmenu li')].map(text),
		status: named('#dpf-status'),
		counters: named('#dpf-counters'),
		counterLabels,
		rows,
		placeholder: text(document.querySelector('#dpf-leases tr.placeholder')),
		error: text(document.querySelector('#dpf-error')) || null,
		readonly: text(document.querySelector('#dpf-readonly')),
		notifications: [...document.querySelectorAll('#maincontent > .alert-message')].map(text),
	};
}

const isLocal = (url) => /^(https?|wss?):\/\/127\.0\.0\.1(:\d+)?\//.test(url) || /^(data|blob|about):/.test(url);

const profile = mkdtempSync(join(tmpdir(), 'dpf-chromium-'));
let context;
try {
	context = await chromium.launchPersistentContext(profile, {
		executablePath: opt.chromium,
		headless: true,
		args: chromiumArgs,
		viewport: { width: 1200, height: 900 },
		timeout,
	});
	await context.route((url) => !isLocal(url.href), (route) => {
		result.blocked.push(route.request().url());
		return route.abort();
	});
	const page = context.pages()[0] ?? await context.newPage();
	page.setDefaultTimeout(timeout);
	page.on('pageerror', (err) => result.errors.push(`page: ${err.message}`));
	page.on('console', (msg) => {
		if (msg.type() === 'error')
			result.errors.push(`console: ${msg.text()}`);
	});
	page.on('request', (req) => {
		if (req.method() === 'POST' && req.url().includes('/ubus'))
			result.ubus.push(req.postDataJSON()?.params?.slice(1, 4));
	});

	result.step = 'load';
	await page.goto(opt.url);

	if (opt['expect-error']) {
		result.step = 'wait for the error notice';
		await page.waitForSelector('#dpf-error .alert-message');
	} else {
		const want = Number(opt['expect-leases'] ?? 0);
		result.step = `wait for the status and ${want} lease(s)`;
		await page.waitForFunction((n) => {
			const addr = document.querySelector('#dpf-status [data-name="external_address"]');
			return addr && addr.textContent.trim() !== '' &&
				document.querySelectorAll('#dpf-leases tr[data-lease]').length === n;
		}, want);
	}
	result.before = await page.evaluate(snapshot);

	if (result.before.rows.length > 0) {
		result.step = 'watch the countdown';
		const cell = page.locator('#dpf-leases tr[data-lease] [data-col="time_left"]').first();
		const first = await cell.textContent();
		await page.waitForTimeout(2100);
		result.countdown = [first, await cell.textContent()];
	}

	if (opt.shot) {
		result.step = 'screenshot';
		await page.screenshot({ path: opt.shot, fullPage: true });
	}

	if (opt.delete) {
		result.step = `delete ${opt.delete}`;
		const sel = `#dpf-leases tr[data-lease="${opt.delete}"]`;
		const started = Date.now();
		await page.locator(`${sel} button.cbi-button-remove`).click();
		await page.waitForSelector(sel, { state: 'detached' });
		result.deleteMillis = Date.now() - started;
		result.after = await page.evaluate(snapshot);
		if (opt['shot-after']) {
			result.step = 'screenshot after delete';
			await page.screenshot({ path: opt['shot-after'], fullPage: true });
		}
	}

	if (opt['try-delete']) {
		result.step = `try to delete ${opt['try-delete']}`;
		const sel = `#dpf-leases tr[data-lease="${opt['try-delete']}"] button.cbi-button-remove`;
		result.tried = await page.evaluate((sel) => {
			const btn = document.querySelector(sel);
			if (btn)
				btn.click();
			return btn != null;
		}, sel);
		await page.waitForTimeout(2000);
		result.after = await page.evaluate(snapshot);
		if (opt['shot-after']) {
			result.step = 'screenshot after trying to delete';
			await page.screenshot({ path: opt['shot-after'], fullPage: true });
		}
	}

	result.step = 'done';
	result.ok = true;
} catch (err) {
	result.failure = `${result.step}: ${err.message.split('\n')[0]}`;
	if (context) {
		try {
			const page = context.pages()[0];
			result.atFailure = await page.evaluate(snapshot);
			if (opt.shot)
				await page.screenshot({ path: opt.shot, fullPage: true });
		} catch {
			// the page itself is gone; report what we have
		}
	}
} finally {
	if (context)
		await context.close().catch(() => {});
	rmSync(profile, { recursive: true, force: true });
}

console.log(JSON.stringify(result, null, 1));
process.exit(result.ok ? 0 : 1);
