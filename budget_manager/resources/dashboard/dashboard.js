// The dashboard: reads a project's budgets, spend history and open holds from the service's
// endpoints every two seconds and draws them as text, HTML bars and SVG charts (frappe-charts).
"use strict";
(() => {
  const STORE = "budget-manager.key";
  const POLL_MS = 2000;
  const SPANS = [7, 30, 90];  // days of history the page can show
  const DAY_MS = 86400000;
  const key = sessionStorage.getItem(STORE);
  const $ = (id) => document.getElementById(id);
  const charts = { days: null, models: null };
  let project = null;
  const askedSpan = Number(new URLSearchParams(location.search).get("days"));
  let span = SPANS.includes(askedSpan) ? askedSpan : 30;

  // A name is one percent-encoded path segment; dots too, so that "." and ".." stay names.
  const segment = (name) => encodeURIComponent(name).replace(/\./g, "%2E");

  const money = (value) => {
    const v = Number(value);
    const digits = v !== 0 && Math.abs(v) < 1 ? 6 : 2;
    const text = Math.abs(v).toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: digits });
    return (v < 0 ? "-$" : "$") + text;
  };

  const clock = (epoch) => new Date(epoch * 1000).toISOString().replace("T", " ").slice(0, 19) + " UTC";

  function cell(text, className) {
    const td = document.createElement("td");
    td.textContent = text;
    if (className) td.className = className;
    return td;
  }

  function row(cells) {
    const tr = document.createElement("tr");
    tr.append(...cells);
    return tr;
  }

  class Refused extends Error {}

  async function api(path, options = {}) {
    const headers = { ...(options.headers || {}) };
    if (key) headers.Authorization = `Bearer ${key}`;
    const answer = await fetch(path, { ...options, headers, cache: "no-store" });
    if (answer.status === 401) {
      location.reload();  // the login page tries the kept key once more, then asks for one
      throw new Refused("the key was refused");
    }
    const body = await answer.json();
    if (!answer.ok) throw new Error(body.message || `the service answered ${answer.status}`);
    return body;
  }

  // -- users: spend against budget, parents before their children --------------------------------
  function ordered(records) {
    const children = new Map();
    const roots = [];
    for (const user of Object.keys(records).sort()) {
      const parent = records[user].parent;
      if (parent != null && parent in records) {
        if (!children.has(parent)) children.set(parent, []);
        children.get(parent).push(user);
      } else {
        roots.push(user);
      }
    }
    const out = [];
    const visit = (user, depth) => {
      out.push([user, depth]);
      for (const child of children.get(user) || []) visit(child, depth + 1);
    };
    roots.forEach((user) => visit(user, 0));
    return out;
  }

  function bar(spent, budget) {
    const share = budget > 0 ? spent / budget : spent > 0 ? Infinity : 0;
    const meter = document.createElement("div");
    meter.className = "meter" + (share >= 1 ? " over" : share >= 0.8 ? " warn" : "");
    meter.setAttribute("role", "img");
    const percent = Number.isFinite(share) ? `${(share * 100).toFixed(1)}%` : "over";
    meter.setAttribute("aria-label", `${money(spent)} of ${money(budget)} (${percent})`);
    const fill = document.createElement("div");
    fill.className = "fill";
    fill.style.width = `${Math.min(100, Number.isFinite(share) ? share * 100 : 100)}%`;
    const label = document.createElement("span");
    label.className = "label";
    label.textContent = percent;
    meter.append(fill, label);
    const td = document.createElement("td");
    td.append(meter);
    return td;
  }

  function drawUsers(records, holds) {
    const held = new Map();
    for (const hold of holds) held.set(hold.user, (held.get(hold.user) || 0) + Number(hold.amount));
    const rows = ordered(records).map(([user, depth]) => {
      const r = records[user];
      const spent = Number(r.current_cost);
      const budget = Number(r.total_budget);
      const name = cell(user, "name");
      name.style.paddingLeft = `${0.5 + depth * 1.25}em`;
      const tr = row([
        name,
        cell(r.parent ?? "—"),
        bar(spent, budget),
        cell(money(spent), "num spent"),
        cell(money(budget), "num"),
        cell(money(held.get(user) || 0), "num"),
        cell(money(budget - spent), "num"),
        cell(r.period ?? "no reset"),
      ]);
      tr.dataset.user = user;
      return tr;
    });
    $("users").tBodies[0].replaceChildren(...rows);
    $("users-empty").hidden = rows.length > 0;
  }

  // -- spend over time ---------------------------------------------------------------------------
  function lastDays(now) {
    const days = [];
    for (let i = span - 1; i >= 0; i--) days.push(new Date(now - i * DAY_MS).toISOString().slice(0, 10));
    return days;
  }

  // Made once and then updated in place. A new chart draws its data 700 ms after it is made
  // (frappe-charts' first-draw delay); updates redraw at once (animate: 0).
  function drawChart(which, element, options) {
    const values = options.data.datasets[0].values;
    if (!values.some((v) => v > 0)) {  // frappe-charts cannot scale an axis of zeros
      charts[which] = null;
      element.replaceChildren();
      return;
    }
    if (charts[which]) {
      charts[which].update(options.data);
    } else {
      element.replaceChildren();
      charts[which] = new frappe.Chart(element, { ...options, animate: 0 });
    }
  }

  function drawDays(spend) {
    const days = lastDays(Date.now());
    const values = days.map((day) => Number(spend[day] || 0));
    drawChart("days", $("days-chart"), {
      type: "bar",
      height: 220,
      colors: ["#3b6fd8"],
      data: { labels: days.map((d) => d.slice(5)), datasets: [{ name: "Spend", values }] },
      axisOptions: { xIsSeries: true, xAxisMode: "tick" },
      tooltipOptions: { formatTooltipY: (v) => money(v) },
    });
    const total = values.reduce((a, b) => a + b, 0);
    $("days-summary").textContent =
      `${money(total)} in the last ${span} days; ${money(values[values.length - 1])} today.`;
    $("days").tBodies[0].replaceChildren(
      ...days.filter((d) => spend[d] !== undefined).map((d) => row([cell(d), cell(money(spend[d]), "num")])),
    );
  }

  // -- per model ---------------------------------------------------------------------------------
  function drawModels(spend) {
    const models = Object.keys(spend).sort((a, b) => Number(spend[b]) - Number(spend[a]));
    const total = models.reduce((sum, m) => sum + Number(spend[m]), 0);
    drawChart("models", $("models-chart"), {
      type: "percentage",
      height: 160,
      data: { labels: models, datasets: [{ name: "Spend", values: models.map((m) => Number(spend[m])) }] },
      tooltipOptions: { formatTooltipY: (v) => money(v) },
    });
    $("models").tBodies[0].replaceChildren(
      ...models.map((m) =>
        row([
          cell(m, "name"),
          cell(money(spend[m]), "num"),
          cell(total > 0 ? `${((Number(spend[m]) / total) * 100).toFixed(1)}%` : "—", "num"),
        ]),
      ),
    );
    $("models-empty").hidden = models.length > 0;
  }

  // -- open holds --------------------------------------------------------------------------------
  function drawHolds(holds) {
    const now = Date.now() / 1000;
    const rows = [...holds]
      .sort((a, b) => a.created_at - b.created_at)
      .map((h) => {
        const left = Math.round(h.expires_at - now);
        return row([
          cell(h.hold_id, "name"),
          cell(h.user),
          cell(h.model ?? "—"),
          cell(money(h.amount), "num"),
          cell(clock(h.created_at)),
          cell(left > 0 ? `in ${left} s` : "expired"),
        ]);
      });
    $("holds").tBodies[0].replaceChildren(...rows);
    $("holds-empty").hidden = rows.length > 0;
  }

  // -- polling -----------------------------------------------------------------------------------
  async function refresh() {
    if (project === null) return;
    const shown = project;
    const spanShown = span;
    const p = segment(project);
    const [budgets, perDay, perModel, holds] = await Promise.all([
      api("get_budget", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ project_name: project }),
      }),
      api(`v1/projects/${p}/report?by=day&since=${span}d`),
      api(`v1/projects/${p}/report?by=model&since=${span}d`),
      api(`v1/projects/${p}/holds`),
    ]);
    if (project !== shown || span !== spanShown) return;  // changed meanwhile: its own refresh draws it
    const records = budgets.status === "success" ? budgets.data : {};
    drawUsers(records, holds.holds);
    drawDays(perDay.spend);
    drawModels(perModel.spend);
    drawHolds(holds.holds);
  }

  // The projects the key may use, read on every poll (a project gets listed once it has a budget).
  let listedBefore = null;
  async function chooseProjects() {
    const listed = (await api("v1/projects")).projects;
    const asked = new URLSearchParams(location.search).get("project");
    const names = asked !== null && !listed.includes(asked) ? [asked, ...listed] : listed;
    const select = $("project");
    if (JSON.stringify(names) === listedBefore) return;  // an open list stays open
    listedBefore = JSON.stringify(names);
    select.replaceChildren(
      ...names.map((name) => {
        const option = document.createElement("option");
        option.value = option.textContent = name;
        return option;
      }),
    );
    if (project === null || !names.includes(project)) project = asked ?? names[0] ?? null;
    select.value = project ?? "";
    if (project === null) $("users-empty").hidden = false;
  }

  async function tick() {
    if (document.hidden) {  // nobody is looking: ask again when the tab is shown
      document.addEventListener("visibilitychange", tick, { once: true });
      return;
    }
    try {
      await chooseProjects();
      await refresh();
      $("problem").hidden = true;
      $("updated").textContent = `Updated ${new Date().toLocaleTimeString("en-GB")}`;
    } catch (err) {
      if (err instanceof Refused) return;
      $("problem").textContent = `Cannot update: ${err.message}`;
      $("problem").hidden = false;
    }
    setTimeout(tick, POLL_MS);
  }

  // A choice is kept in the URL (so a link or a reload shows the same) and drawn at once.
  function choose(name, value) {
    const url = new URL(location.href);
    url.searchParams.set(name, value);
    history.replaceState(null, "", url);
    refresh().catch(() => {});  // the polling loop reports problems
  }

  function showSpan() {
    $("span").value = String(span);
    for (const text of document.querySelectorAll(".span-text")) text.textContent = `${span} days`;
  }

  $("project").addEventListener("change", (event) => {
    project = event.target.value;
    choose("project", project);
  });
  $("span").addEventListener("change", (event) => {
    span = Number(event.target.value);
    showSpan();
    choose("days", span);
  });
  showSpan();
  $("forget").hidden = !key;
  $("forget").addEventListener("click", () => {
    sessionStorage.removeItem(STORE);
    location.reload();
  });
  tick();
})();
