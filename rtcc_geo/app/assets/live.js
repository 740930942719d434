// Live incidents and alerts. Holds the server-sent event stream open; new incidents are
// drawn on the map's live trace (the trace named 'live') with Plotly directly, alerts are handed to Dash
// (set_props on a hidden store) so the server re-renders the alert panel. Nothing here
// talks to any host but the page's own; EventSource reconnects by itself (retry: 1000). One tab
// of the browser holds the stream and relays its events to the others (see connect).
//
// Dots fade with age (incident time; arrival time where the role gets no incident time):
// full colour for the newest quarter hour, fading to 20 % at six hours, measured from the
// newest incident seen (so a replayed morning fades the same as a live one). Tooltips give
// the agency's local time. The 'live-show' box hides and shows the trace.
(function () {
  var MAX = 2000;        // live points kept on the map, newest last
  var live = window.rtccLive = {received: 0, alerts: 0, points: [], source: null, hidden: false, drawn: 0};

  function graph() {
    var gd = document.querySelector('#map .js-plotly-plot');
    return gd && gd.data && gd.data.length ? gd : null;
  }
  function liveIndex(gd) {
    for (var i = 0; i < gd.data.length; i++) if (gd.data[i].name === 'live') return i;
    return -1;
  }
  function tz() {
    var b = window.rtccHex && window.rtccHex.base;
    return (b && b.tz) || undefined;
  }
  var fmt = null;
  function local(ms) {
    if (!fmt) {
      try {
        fmt = new Intl.DateTimeFormat('en-CA', {timeZone: tz(), year: 'numeric', month: '2-digit', day: '2-digit',
                                                hour: '2-digit', minute: '2-digit', hour12: false});
      } catch (e) { fmt = new Intl.DateTimeFormat('en-CA', {dateStyle: 'short', timeStyle: 'short'}); }
    }
    return fmt.format(new Date(ms)).replace(',', '');
  }

  // Opacity of a dot ``age`` ms old: 1 up to 15 min, log-linear to 0.2 at 6 h, then 0.2.
  live.opacity = function (age) {
    var m = Math.max(age, 0) / 60000;
    if (m <= 15) return 1;
    if (m >= 360) return 0.2;
    return +(1 - 0.8 * Math.log(m / 15) / Math.log(360 / 15)).toFixed(3);
  };

  function now() {
    var t = 0;
    for (var i = 0; i < live.points.length; i++) if (live.points[i].t > t) t = live.points[i].t;
    return t;
  }

  // Redraw the whole trace (positions, fading, labels); at most a few times a second.
  function draw() {
    var gd = graph();
    if (!gd || !window.Plotly) return;
    var t = liveIndex(gd);
    if (t < 0) return;
    var ref = now(), pts = live.points;
    var col = function (k) { return pts.map(function (p) { return p[k]; }); };
    window.Plotly.restyle(gd, {lon: [col('lon')], lat: [col('lat')], customdata: [col('label')],
                               'marker.opacity': [pts.map(function (p) { return live.opacity(ref - p.t); })],
                               visible: !live.hidden}, [t]);
    live.drawn = pts.length;
  }
  var pending = null;
  function schedule() {
    if (pending) return;
    pending = setTimeout(function () { pending = null; draw(); }, 250);
  }

  // Rows as the stream sends them -> points (also used by tests to draw known rows).
  live.add = function (rows) {
    var arrived = Date.now();
    var pts = rows.map(function (r) {
      var t = r.occurred_from ? Date.parse(r.occurred_from) : NaN;
      var known = !isNaN(t);
      if (!known) t = arrived;
      return {lon: r.lon, lat: r.lat, t: t,
              label: r.category + (known ? ' · ' + local(t) : ' · arrived ' + local(arrived)) + ' (local time)'};
    });
    live.received += pts.length;
    live.points = live.points.concat(pts);
    var trim = live.points.length - MAX;
    if (trim > 0) live.points = live.points.slice(trim);
    schedule();
  };
  // Only a change is drawn: the page's first call (shown) must not restyle the map while it loads.
  live.setHidden = function (h) {
    if (!!h === live.hidden) return;
    live.hidden = !!h;
    draw();
  };

  function handle(type, data) {
    if (type === 'incidents') live.add(JSON.parse(data).rows);
    else if (type === 'alerts') {
      live.alerts += JSON.parse(data).rows.length;
      if (document.getElementById('alerts-panel') && window.dash_clientside && window.dash_clientside.set_props) {
        window.dash_clientside.set_props('live-alerts', {data: {n: live.alerts, t: Date.now()}});
      }
    }
  }
  function open(relay) {
    var es = new EventSource('/api/live/stream');
    ['incidents', 'alerts'].forEach(function (type) {
      es.addEventListener(type, function (ev) {
        handle(type, ev.data);
        if (relay) relay.postMessage({type: type, data: ev.data});
      });
    });
    return es;
  }

  // One event stream per browser, not one per tab. Over HTTP/1.1 a browser opens at most six
  // connections to a server and each open stream holds one for as long as its tab lives, so with
  // six map tabs open a seventh tab, and every request of the six, waited for ever. The tab
  // holding the Web Lock 'rtcc-live-stream' opens the stream and relays each event to the other
  // tabs on a BroadcastChannel; when it closes, the lock (and the stream) pass to another tab.
  function connect() {
    if (live.source) return;
    if (!document.getElementById('alerts-panel')) { setTimeout(connect, 500); return; }  // not the map page
    if (!(window.BroadcastChannel && navigator.locks)) { live.role = 'alone'; live.source = open(null); return; }
    var bc = new BroadcastChannel('rtcc-live');
    live.role = 'follower';
    live.source = {readyState: 0, shared: true};  // the leader's stream, as the leader last told
    bc.onmessage = function (m) {
      var d = m.data || {};
      if (d.type === 'state') { if (live.role !== 'leader') live.source.readyState = d.readyState; }
      else if (d.type === 'hello') { if (live.role === 'leader') bc.postMessage({type: 'state', readyState: live.source.readyState}); }
      else if (live.role !== 'leader') handle(d.type, d.data);
    };
    bc.postMessage({type: 'hello'});
    navigator.locks.request('rtcc-live-stream', function () {
      live.role = 'leader';
      var es = live.source = open(bc);
      var tell = function () { bc.postMessage({type: 'state', readyState: es.readyState}); };
      es.addEventListener('open', tell);
      es.addEventListener('error', tell);
      return new Promise(function () {});  // held until this page goes away
    });
  }
  // After a full redraw of the map the live trace is empty again: put the buffer back.
  setInterval(function () {
    var gd = graph(), t = gd ? liveIndex(gd) : -1;
    if (t >= 0 && live.points.length && (gd.data[t].lon || []).length !== live.points.length) draw();
  }, 1000);
  window.dash_clientside = window.dash_clientside || {};
  window.dash_clientside.rtcc = Object.assign(window.dash_clientside.rtcc || {}, {
    liveShow: function (v) {
      live.setHidden(!(v && v.length));
      return live.hidden ? 'hidden' : 'shown';
    }
  });
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', connect);
  else connect();
})();
