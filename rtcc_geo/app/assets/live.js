// Live incidents and alerts. Holds the server-sent event stream open; new incidents are
// drawn on the map's live trace (the trace named 'live') with Plotly directly, alerts are handed to Dash
// (set_props on a hidden store) so the server re-renders the alert panel. Nothing here
// talks to any host but the page's own; EventSource reconnects by itself (retry: 1000).
(function () {
  var MAX = 2000;        // live points kept on the map, newest last
  var live = window.rtccLive = {received: 0, alerts: 0, points: [], source: null};

  function graph() {
    var gd = document.querySelector('#map .js-plotly-plot');
    return gd && gd.data && gd.data.length ? gd : null;
  }
  function liveIndex(gd) {
    for (var i = 0; i < gd.data.length; i++) if (gd.data[i].name === 'live') return i;
    return -1;
  }

  // Draw the buffer: append when the trace holds exactly what was drawn before,
  // else (the figure was redrawn, e.g. a new resolution) restore it in full.
  function draw(fresh) {
    var gd = graph();
    if (!gd || !window.Plotly) return;
    var t = liveIndex(gd);
    if (t < 0) return;
    var have = gd.data[t].lon ? gd.data[t].lon.length : 0;
    var before = live.points.length - fresh.length;
    var col = function (rows, k) { return rows.map(function (p) { return p[k]; }); };
    if (have === before && fresh.length) {
      window.Plotly.extendTraces(gd, {lon: [col(fresh, 'lon')], lat: [col(fresh, 'lat')],
                                      customdata: [col(fresh, 'label')]}, [t], MAX);
    } else if (have !== live.points.length) {
      window.Plotly.restyle(gd, {lon: [col(live.points, 'lon')], lat: [col(live.points, 'lat')],
                                 customdata: [col(live.points, 'label')]}, [t]);
    }
  }

  function connect() {
    if (live.source) return;
    if (!document.getElementById('alerts-panel')) { setTimeout(connect, 500); return; }  // not the map page
    var es = live.source = new EventSource('/api/live/stream');
    es.addEventListener('incidents', function (ev) {
      var rows = JSON.parse(ev.data).rows.map(function (r) {
        return {lon: r.lon, lat: r.lat, label: r.category + ' ' + (r.occurred_from || '').slice(0, 16)};
      });
      live.received += rows.length;
      live.points = live.points.concat(rows);
      var trim = live.points.length - MAX;
      if (trim > 0) live.points = live.points.slice(trim);
      draw(trim > 0 ? [] : rows);
    });
    es.addEventListener('alerts', function (ev) {
      live.alerts += JSON.parse(ev.data).rows.length;
      if (document.getElementById('alerts-panel') && window.dash_clientside && window.dash_clientside.set_props) {
        window.dash_clientside.set_props('live-alerts', {data: {n: live.alerts, t: Date.now()}});
      }
    });
  }
  // After a full redraw of the map the live trace is empty again: put the buffer back.
  setInterval(function () { if (live.points.length) draw([]); }, 1000);
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', connect);
  else connect();
})();
