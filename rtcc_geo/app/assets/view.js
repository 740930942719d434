// The commander view is a URL. Filters, layer and resolution go in the query string
// (a change pushes a history entry, so back/forward step through views); the camera
// goes in 'cam=zoom,lat,lon' (replaced as the map moves: panning adds no history).
// An address opened, pasted or reached with back/forward is applied through the
// 'view-in' store (one callback sets every widget at once) and map.jumpTo.
(function () {
  var V = window.rtccView = {applied: 0, pushed: 0};
  var KEYS = ['layer', 'start', 'end', 'cats', 'hours', 'dows', 'd', 'res', 'empty', 'wm', 'week'];

  function allCats() {
    return Array.prototype.map.call(document.querySelectorAll('#f-cats input'), function (i) { return i.value; });
  }
  function mapObj() {
    var gd = document.querySelector('#map .js-plotly-plot');
    var fl = gd && gd._fullLayout, sp = fl && fl.map && fl.map._subplot;
    return sp && sp.map;
  }

  // Widget values -> canonical query parameters (defaults left out).
  function encode(layer, start, end, cats, hours, dows, districts, res, empty, week, weekmode) {
    var p = [];
    var add = function (k, v) { p.push(k + '=' + encodeURIComponent(v).replace(/%2C/g, ',')); };
    add('layer', layer || 'counts');
    if (start) add('start', start);
    if (end) add('end', end);
    var all = allCats();
    if (cats && !(all.length && cats.length === all.length)) add('cats', cats.slice().sort().join(','));
    if (hours && (hours[0] !== 0 || hours[1] !== 24)) add('hours', hours[0] + '-' + hours[1]);
    if (dows && dows.length !== 7) add('dows', dows.slice().sort().join(','));
    if (districts && districts.length) add('d', districts.slice().sort().join(','));
    add('res', res);
    if (empty && empty.length) add('empty', 1);
    if (weekmode && weekmode.length) { add('wm', 1); add('week', week); }
    return p.join('&');
  }

  function parse(search) {
    var out = {};
    (search || '').replace(/^\?/, '').split('&').forEach(function (kv) {
      if (!kv) return;
      var i = kv.indexOf('='), k = i < 0 ? kv : kv.slice(0, i), v = i < 0 ? '' : decodeURIComponent(kv.slice(i + 1));
      out[k] = v;
    });
    return out;
  }

  function filterPart(search) {
    var q = parse(search), parts = [];
    KEYS.forEach(function (k) { if (k in q) parts.push(k + '=' + q[k]); });
    return parts.join('&');
  }

  function camParam(m) {
    if (!m) return null;
    var c = m.getCenter();
    return m.getZoom().toFixed(2) + ',' + c.lat.toFixed(5) + ',' + c.lng.toFixed(5);
  }

  function writeUrl(filters, push) {
    var m = mapObj(), cam = camParam(m) || parse(location.search).cam;
    var url = location.pathname + '?' + filters + (cam ? '&cam=' + cam : '') + location.hash;
    if (push) { history.pushState({rtcc: 1}, '', url); V.pushed += 1; }
    else history.replaceState(history.state, '', url);
  }

  function applyCamera(q) {
    if (!q.cam) return;
    var a = q.cam.split(',').map(Number);
    if (a.length !== 3 || a.some(isNaN)) return;
    var tries = 0;
    (function go() {
      var m = mapObj();
      if (!m || !m.isStyleLoaded() || !window.rtccHex || !window.rtccHex.setView) {
        if (++tries < 200) setTimeout(go, 50);
        return;
      }
      window.rtccHex.setView([a[2], a[1]], a[0]);
      // The graph may still re-plot from its figure while the page settles (the camera
      // jumps back to the figure's): hold the address's camera for a few seconds unless
      // the user moves the map.
      var until = Date.now() + 4000, user = false;
      var el = m.getContainer(), mark = function () { user = true; };
      ['mousedown', 'wheel', 'touchstart', 'keydown'].forEach(function (ev) { el.addEventListener(ev, mark, {once: true}); });
      V.holding = true;
      (function hold() {
        if (user || Date.now() > until) { V.holding = false; return; }
        var mm = mapObj(), c = mm && mm.getCenter();
        if (mm && (Math.abs(mm.getZoom() - a[0]) > 0.01 || Math.abs(c.lat - a[1]) > 1e-5 || Math.abs(c.lng - a[2]) > 1e-5)) {
          window.rtccHex.setView([a[2], a[1]], a[0]);
        }
        setTimeout(hold, 200);
      })();
    })();
  }

  // Address -> widgets (through Dash) and camera. On opening, the server has built the
  // page from the address already ('view-applied' says what it took: filters, camera),
  // so only what it did not take is applied here; back/forward apply everything.
  function applyUrl(opening) {
    var q = parse(location.search);
    var done = document.getElementById('view-applied');
    var built = opening && done && done.getAttribute('data-search') === location.search;
    var has = KEYS.some(function (k) { return k in q; });
    if (has && !(built && done.getAttribute('data-filters')) && window.dash_clientside &&
        window.dash_clientside.set_props) {
      window.dash_clientside.set_props('view-in', {data: Object.assign({t: Date.now()}, q)});
    }
    if (!(built && done.getAttribute('data-cam'))) applyCamera(q);
    V.applied += 1;
  }

  function whenPageReady(fn) {
    var tries = 0;
    (function wait() {
      if (document.getElementById('f-layer')) fn();
      else if (++tries < 600) setTimeout(wait, 50);
    })();
  }

  // Follow the map's camera in the address (no history entry per pan).
  var hooked = null;
  setInterval(function () {
    var m = mapObj();
    if (!m || m === hooked) return;
    hooked = m;
    m.on('moveend', function () {
      if (V.holding || location.pathname !== '/' || !document.getElementById('f-layer')) return;
      var f = filterPart(location.search);
      if (f) writeUrl(f, false);
    });
  }, 300);

  window.addEventListener('popstate', function () { whenPageReady(function () { applyUrl(false); }); });
  whenPageReady(function () { applyUrl(true); });

  window.dash_clientside = window.dash_clientside || {};
  window.dash_clientside.rtcc = Object.assign(window.dash_clientside.rtcc || {}, {
    viewToUrl: function () {
      var f = encode.apply(null, arguments);
      if (f === filterPart(location.search)) return window.dash_clientside.no_update;
      // Nothing in the address yet (first change after opening '/'): keep that entry too.
      writeUrl(f, true);
      return f;
    },
    urlToView: function (q) {
      var nu = window.dash_clientside.no_update;
      if (!q) return [nu, nu, nu, nu, nu, nu, nu, nu, nu, nu, nu];
      var list = function (s) { return s ? s.split(',').filter(function (x) { return x !== ''; }) : []; };
      var hours = q.hours ? q.hours.split('-').map(Number) : [0, 24];
      var dows = 'dows' in q ? list(q.dows).map(Number) : [0, 1, 2, 3, 4, 5, 6];
      return [q.layer || 'counts', q.start || nu, q.end || nu, 'cats' in q ? list(q.cats) : allCats(), hours, dows,
              list(q.d), q.res ? Number(q.res) : nu, q.empty ? ['empty'] : [],
              q.week !== undefined ? Number(q.week) : nu, q.wm ? ['week'] : []];
    }
  });
})();
