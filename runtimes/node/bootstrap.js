'use strict';
/*
 * Kindling Node.js runtime client.
 *
 * Runs inside a Kindling sandbox as `node /var/runtime/bootstrap.js`, talks the Lambda Runtime API
 * (http://$AWS_LAMBDA_RUNTIME_API/2018-06-01/...) served by kindling-init, and calls the user's
 * handler with the semantics of the AWS nodejs20.x runtime:
 *   - _HANDLER = "[dir/]file.export[.nested]"; file is file.js / file.mjs / file.cjs under
 *     LAMBDA_TASK_ROOT (or a package resolvable from there); CommonJS via require(), ES modules via
 *     import() (a .js file in a "type": "module" package is imported too).
 *   - async handlers (the returned promise settles the invocation), callback handlers
 *     (event, context, callback) with context.callbackWaitsForEmptyEventLoop, the legacy
 *     context.done / succeed / fail.
 *   - errors reported as {"errorType","errorMessage","trace"}; init errors are
 *     Runtime.MalformedHandlerName / Runtime.ImportModuleError / Runtime.UserCodeSyntaxError /
 *     Runtime.HandlerNotFound; uncaught exceptions and unhandled rejections fail the current
 *     invocation and end the process, as on AWS.
 *   - console.* is rewritten to "<ISO time>\t<request id>\t<LEVEL>\t<message>" lines on stdout
 *     (console.error/warn included, like AWS), written before the response is posted.
 * Built-in modules only. One keep-alive connection (http.Agent maxSockets 1); if it drops, a new one
 * is opened and /next is asked again.
 */

const http = require('http');
const path = require('path');
const fs = require('fs');
const util = require('util');
const { pathToFileURL } = require('url');

const API_PREFIX = '/2018-06-01/runtime';
const env = process.env;
const TASK_ROOT = env.LAMBDA_TASK_ROOT || '/var/task';
if (!env.LAMBDA_RUNTIME_DIR) env.LAMBDA_RUNTIME_DIR = __dirname;

// ---------------------------------------------------------------------------------------------
// Logging (console patch, AWS format).

let currentRequestId; // undefined during init, as on AWS
const stdout = process.stdout;

function writeLog(level, args) {
  const line = `${new Date().toISOString()}\t${currentRequestId}\t${level}\t${util.format.apply(util, args)}\n`;
  stdout.write(line);
}

function patchConsole() {
  const mk = (level) => function () { writeLog(level, arguments); };
  console.log = mk('INFO');
  console.info = mk('INFO');
  console.warn = mk('WARN');
  console.error = mk('ERROR');
  console.debug = mk('DEBUG');
  console.trace = function () {
    const err = new Error();
    err.name = 'Trace';
    err.message = util.format.apply(util, arguments);
    Error.captureStackTrace(err, console.trace);
    writeLog('TRACE', [err.stack]);
  };
  console.fatal = mk('FATAL');
}

// Resolves once stdout/stderr have handed everything written so far to the kernel.
function flushStdio() {
  const pending = [];
  for (const s of [process.stdout, process.stderr]) {
    if (s.writableLength > 0) pending.push(new Promise((r) => s.once('drain', r)));
  }
  return pending.length ? Promise.all(pending) : null;
}

// ---------------------------------------------------------------------------------------------
// Errors

function errorToDoc(error) {
  try {
    if (error instanceof Error || util.types.isNativeError(error) ||
        (error && typeof error === 'object' && typeof error.message === 'string' && typeof error.stack === 'string')) {
      const name = error.name || (error.constructor && error.constructor.name) || 'Error';
      const stack = typeof error.stack === 'string' ? error.stack.split('\n') : [];
      return { errorType: String(name), errorMessage: String(error.message), trace: stack };
    }
    return { errorType: typeof error, errorMessage: String(error), trace: [] };
  } catch (_e) {
    return {
      errorType: 'handled',
      errorMessage: 'callback called with Error argument, but there was a problem while retrieving one or more of its message, name, and stack',
      trace: [],
    };
  }
}

function runtimeError(type, message, cause) {
  const e = new Error(message);
  e.name = type;
  if (cause && typeof cause.stack === 'string') {
    e.stack = `${type}: ${message}\n` + cause.stack.split('\n').slice(1).join('\n');
  }
  return e;
}

function safeStringify(doc) {
  try {
    return JSON.stringify(doc);
  } catch (_e) {
    return JSON.stringify({ errorType: String(doc.errorType), errorMessage: String(doc.errorMessage), trace: [] });
  }
}

// ---------------------------------------------------------------------------------------------
// Runtime API client

function parseAddress(addr) {
  const i = addr.lastIndexOf(':');
  if (i <= 0) return { host: addr, port: 80 };
  let host = addr.slice(0, i);
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
  return { host, port: Number(addr.slice(i + 1)) };
}

if (!env.AWS_LAMBDA_RUNTIME_API) {
  process.stderr.write('kindling node runtime: AWS_LAMBDA_RUNTIME_API is not set\n');
  process.exit(2);
}
const { host: API_HOST, port: API_PORT } = parseAddress(env.AWS_LAMBDA_RUNTIME_API);
const agent = new http.Agent({ keepAlive: true, maxSockets: 1, maxFreeSockets: 1 });

function request(method, urlPath, body, headers) {
  return new Promise((resolve, reject) => {
    const opts = { agent, host: API_HOST, port: API_PORT, method, path: urlPath, headers: headers || {} };
    if (body !== undefined) opts.headers['Content-Length'] = Buffer.byteLength(body);
    const req = http.request(opts, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: chunks.length === 1 ? chunks[0] : Buffer.concat(chunks) }));
      res.on('error', reject);
      res.on('aborted', () => reject(new Error('response aborted')));
    });
    req.on('error', reject);
    req.setNoDelay(true);
    if (body !== undefined) req.end(body); else req.end();
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function nextInvocation() {
  let delay = 1;
  for (let failures = 0; ; failures++) {
    let res;
    try {
      res = await request('GET', API_PREFIX + '/invocation/next');
    } catch (e) {
      if (failures >= 200) throw new Error(`lost the Runtime API connection and could not reconnect: ${e.message}`);
      await sleep(delay);
      delay = Math.min(delay * 2, 500);
      continue;
    }
    if (res.status !== 200) {
      throw new Error(`GET /next answered HTTP ${res.status}: ${res.body.toString('utf8', 0, 200)}`);
    }
    return res;
  }
}

async function post(urlPath, body, headers) {
  for (let attempt = 0; ; attempt++) {
    try {
      const res = await request('POST', urlPath, body, headers);
      return res.status;
    } catch (e) {
      if (attempt >= 2) throw e;
      await sleep(5 * (attempt + 1));
    }
  }
}

function postError(urlPath, doc) {
  return post(urlPath, safeStringify(doc), {
    'Content-Type': 'application/json',
    'Lambda-Runtime-Function-Error-Type': String(doc.errorType).replace(/[^\x20-\x7e]/g, '?'),
  });
}

function fatal(msg) {
  process.stderr.write(`kindling node runtime: ${msg}\n`);
  process.exit(3);
}

// ---------------------------------------------------------------------------------------------
// Handler loading (AWS rules)

async function loadModule(moduleRoot, moduleName) {
  const base = path.resolve(TASK_ROOT, moduleRoot, moduleName);
  for (const ext of ['.js', '.mjs', '.cjs']) {
    const file = base + ext;
    let st;
    try { st = fs.statSync(file); } catch (_e) { continue; }
    if (!st.isFile()) continue;
    if (ext === '.mjs') return import(pathToFileURL(file).href);
    if (ext === '.cjs') return require(file);
    try {
      return require(file);
    } catch (e) {
      if (e && e.code === 'ERR_REQUIRE_ESM') return import(pathToFileURL(file).href);
      throw e;
    }
  }
  // Not a file in the task root: a package (node_modules) or a file named exactly.
  const resolved = require.resolve(moduleName, { paths: [path.resolve(TASK_ROOT, moduleRoot), TASK_ROOT] });
  try {
    return require(resolved);
  } catch (e) {
    if (e && e.code === 'ERR_REQUIRE_ESM') return import(pathToFileURL(resolved).href);
    throw e;
  }
}

async function loadHandler(fullHandler) {
  if (!fullHandler) throw runtimeError('Runtime.MalformedHandlerName', 'Bad handler');
  if (fullHandler.includes('..')) {
    throw runtimeError('Runtime.MalformedHandlerName', "'../' not allowed in handler name. Relative paths are not supported.");
  }
  const handlerString = path.basename(fullHandler);
  const moduleRoot = fullHandler.slice(0, fullHandler.length - handlerString.length);
  const m = /^([^.]*)\.(.*)$/.exec(handlerString);
  if (!m || !m[1] || !m[2]) throw runtimeError('Runtime.MalformedHandlerName', 'Bad handler');
  const [, moduleName, handlerPath] = m;

  let mod;
  try {
    mod = await loadModule(moduleRoot, moduleName);
  } catch (e) {
    if (e instanceof SyntaxError) {
      throw runtimeError('Runtime.UserCodeSyntaxError', `${e.name}: ${e.message}`, e);
    }
    if (e && (e.code === 'MODULE_NOT_FOUND' || e.code === 'ERR_MODULE_NOT_FOUND')) {
      throw runtimeError('Runtime.ImportModuleError', `${e.name}: ${e.message}`, e);
    }
    throw e; // the module threw while loading: reported with its own type
  }
  let fn = handlerPath.split('.').reduce((o, k) => (o === undefined || o === null ? undefined : o[k]), mod);
  if (fn === undefined && mod && mod.default && typeof mod.default === 'object' && !(handlerPath in mod)) {
    // ESM namespace of a CommonJS module that exported through module.exports = {...}
    fn = handlerPath.split('.').reduce((o, k) => (o === undefined || o === null ? undefined : o[k]), mod.default);
  }
  if (fn === undefined || fn === null) {
    throw runtimeError('Runtime.HandlerNotFound', `${fullHandler} is undefined or not exported`);
  }
  if (typeof fn !== 'function') {
    throw runtimeError('Runtime.HandlerNotFound', `${fullHandler} is not a function`);
  }
  return fn;
}

// ---------------------------------------------------------------------------------------------
// Context

const FUNCTION_NAME = env.AWS_LAMBDA_FUNCTION_NAME;
const FUNCTION_VERSION = env.AWS_LAMBDA_FUNCTION_VERSION;
const MEMORY = env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE;
const LOG_GROUP = env.AWS_LAMBDA_LOG_GROUP_NAME;
const LOG_STREAM = env.AWS_LAMBDA_LOG_STREAM_NAME;

function parseJsonHeader(v) {
  if (!v) return undefined;
  try { return JSON.parse(v); } catch (_e) { /* maybe base64 */ }
  try { return JSON.parse(Buffer.from(v, 'base64').toString('utf8')); } catch (_e) { return undefined; }
}

function makeContext(headers, invocation) {
  const deadline = Number(headers['lambda-runtime-deadline-ms']) || 0;
  const ctx = {
    callbackWaitsForEmptyEventLoop: true,
    functionName: FUNCTION_NAME,
    functionVersion: FUNCTION_VERSION,
    invokedFunctionArn: headers['lambda-runtime-invoked-function-arn'],
    memoryLimitInMB: MEMORY,
    awsRequestId: headers['lambda-runtime-aws-request-id'],
    logGroupName: LOG_GROUP,
    logStreamName: LOG_STREAM,
    identity: undefined,
    clientContext: undefined,
    getRemainingTimeInMillis() {
      const r = deadline - Date.now();
      return r > 0 ? r : 0;
    },
    // Legacy API: settle at once, without waiting for the event loop.
    done(err, result) { invocation.legacy(err, result); },
    succeed(result) { invocation.legacy(null, result); },
    fail(err) { invocation.legacy(err === undefined || err === null ? 'handled' : err); },
  };
  const ci = parseJsonHeader(headers['lambda-runtime-cognito-identity']);
  if (ci && typeof ci === 'object') {
    ctx.identity = {
      cognitoIdentityId: ci.cognitoIdentityId !== undefined ? ci.cognitoIdentityId : ci.cognito_identity_id,
      cognitoIdentityPoolId: ci.cognitoIdentityPoolId !== undefined ? ci.cognitoIdentityPoolId : ci.cognito_identity_pool_id,
    };
  }
  const cc = parseJsonHeader(headers['lambda-runtime-client-context']);
  if (cc && typeof cc === 'object') ctx.clientContext = cc;
  return ctx;
}

// ---------------------------------------------------------------------------------------------
// Invocation

let current = null; // the invocation in progress: { id, settled, ... }
let beforeExitAction = null;

process.on('beforeExit', () => {
  const a = beforeExitAction;
  beforeExitAction = null;
  if (a) a();
});

// Runs the handler; resolves to { error: bool, value } once the invocation is settled.
function runHandler(handler, event, headers) {
  return new Promise((resolve) => {
    const inv = {
      settled: false,
      callbackCalled: false,
      finish(isError, value) {
        if (inv.settled) return;
        inv.settled = true;
        beforeExitAction = null;
        resolve({ isError, value });
      },
      legacy(err, result) {
        if (err !== undefined && err !== null) inv.finish(true, err); else inv.finish(false, result);
      },
    };
    const ctx = makeContext(headers, inv);
    const callback = (err, result) => {
      if (inv.settled || inv.callbackCalled) return;
      inv.callbackCalled = true;
      const settle = () => inv.legacy(err, result);
      if (ctx.callbackWaitsForEmptyEventLoop) beforeExitAction = settle;
      else settle();
    };
    // Nothing settled the invocation and the event loop ran dry: the result is null (as AWS).
    beforeExitAction = () => inv.finish(false, undefined);
    let r;
    try {
      r = handler(event, ctx, callback);
    } catch (e) {
      inv.finish(true, e);
      return;
    }
    if (r && typeof r.then === 'function') {
      r.then((v) => inv.finish(false, v), (e) => inv.finish(true, e));
    }
  });
}

const INVOKE_PREFIX = API_PREFIX + '/invocation/';

async function loop(handler) {
  for (;;) {
    let res;
    try {
      res = await nextInvocation();
    } catch (e) {
      fatal(e.message);
    }
    const h = res.headers;
    const id = h['lambda-runtime-aws-request-id'] || '';
    currentRequestId = id;
    if (h['lambda-runtime-trace-id'] !== undefined) env._X_AMZN_TRACE_ID = h['lambda-runtime-trace-id'];
    else delete env._X_AMZN_TRACE_ID;
    current = { id, answered: false };

    let outcome;
    let event;
    try {
      event = res.body.length ? JSON.parse(res.body.toString('utf8')) : null;
    } catch (e) {
      outcome = { isError: true, value: runtimeError('Runtime.UnmarshalError', `Unable to unmarshal input: ${e.message}`) };
    }
    if (!outcome) outcome = await runHandler(handler, event, h);

    let urlPath;
    let body;
    let headers;
    if (!outcome.isError) {
      try {
        body = JSON.stringify(outcome.value === undefined ? null : outcome.value);
        if (body === undefined) body = 'null'; // a function or symbol result
        urlPath = INVOKE_PREFIX + id + '/response';
        headers = { 'Content-Type': 'application/json' };
      } catch (_e) {
        outcome = { isError: true, value: runtimeError('Error', 'Unable to stringify response body') };
      }
    }
    if (outcome.isError) {
      const doc = errorToDoc(outcome.value);
      writeLog('ERROR', ['Invoke Error \t' + safeStringify(doc)]);
      body = safeStringify(doc);
      urlPath = INVOKE_PREFIX + id + '/error';
      headers = {
        'Content-Type': 'application/json',
        'Lambda-Runtime-Function-Error-Type': String(doc.errorType).replace(/[^\x20-\x7e]/g, '?'),
      };
    }
    const flushed = flushStdio();
    if (flushed) await flushed;
    current.answered = true;
    let status;
    try {
      status = await post(urlPath, body, headers);
    } catch (e) {
      fatal(`lost the Runtime API connection while posting the result: ${e.message}`);
    }
    if (status >= 500) process.exit(4);
    if (status === 413 && !outcome.isError) {
      await postError(INVOKE_PREFIX + id + '/error', {
        errorType: 'Function.ResponseSizeTooLarge',
        errorMessage: 'Response payload size exceeded maximum allowed payload size',
        trace: [],
      }).catch(() => {});
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Fatal errors outside the handler's promise: fail the invocation in progress, then exit (AWS).

let dying = false;
async function die(doc, label, code) {
  if (dying) return;
  dying = true;
  beforeExitAction = null;
  writeLog('ERROR', [label + ' \t' + safeStringify(doc)]);
  try {
    if (current === null) {
      await postError(API_PREFIX + '/init/error', doc);
    } else if (!current.answered) {
      current.answered = true;
      await postError(INVOKE_PREFIX + current.id + '/error', doc);
    }
  } catch (_e) { /* nothing more to do */ }
  const flushed = flushStdio();
  if (flushed) await flushed;
  process.exit(code);
}

process.on('uncaughtException', (err) => {
  die(errorToDoc(err), 'Uncaught Exception', 129);
});

process.on('unhandledRejection', (reason) => {
  const e = runtimeError('Runtime.UnhandledPromiseRejection', String(reason instanceof Error ? `${reason.name}: ${reason.message}` : reason),
    reason instanceof Error ? reason : undefined);
  const doc = errorToDoc(e);
  doc.reason = reason instanceof Error ? `${reason.name}: ${reason.message}` : String(reason);
  die(doc, 'Unhandled Promise Rejection', 128);
});

// ---------------------------------------------------------------------------------------------

async function main() {
  patchConsole();
  let handler;
  try {
    handler = await loadHandler(env._HANDLER || '');
  } catch (e) {
    const doc = errorToDoc(e);
    await die(doc, 'Uncaught Exception', 129);
    return;
  }
  await loop(handler);
}

main();
