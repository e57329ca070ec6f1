// The lead panel inside Chatwoot (a Dashboard App; see web/chatwoot_panel.py).
// Chatwoot posts {"event": "appContext", "data": {"conversation", "contact", "currentAgent"}}
// as a JSON string into this iframe; only a message from the configured Chatwoot origin,
// sent by the parent window, is read. Everything is drawn with textContent (no HTML from data).
"use strict";

(function () {
  var body = document.body;
  var chatwootOrigin = body.getAttribute("data-chatwoot-origin") || "";
  var token = new URLSearchParams(window.location.search).get("token") || "";
  var statusEl = document.getElementById("status");
  var cardEl = document.getElementById("card");
  var current = null;

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function section(title, children) {
    var box = el("section", "box");
    box.appendChild(el("h2", null, title));
    children.forEach(function (child) { box.appendChild(child); });
    return box;
  }

  function setStatus(text, kind) {
    statusEl.textContent = text;
    statusEl.className = "status" + (kind ? " " + kind : "");
  }

  function asId(value) {
    var n = Number(value);
    return Number.isInteger(n) && n > 0 ? n : null;
  }

  function api(path, method, payload) {
    var options = {
      method: method,
      headers: { "X-Panel-Token": token, "Accept": "application/json" },
      credentials: "omit",
      cache: "no-store"
    };
    if (payload) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(payload);
    }
    return fetch(path, options).then(function (response) {
      return response.json().then(function (data) {
        if (!response.ok) {
          var error = new Error(data && data.error ? data.error : "HTTP " + response.status);
          error.status = response.status;
          throw error;
        }
        return data;
      });
    });
  }

  function header(card) {
    var top = el("header", "lead");
    top.appendChild(el("h1", "name", card.name));
    var line = el("p", "muted", card.channel + (card.phone ? " · " + card.phone : ""));
    top.appendChild(line);
    var temp = el("p", "temperature");
    temp.appendChild(el("span", "badge temp-" + card.temperature, card.temperature_label));
    temp.appendChild(el("span", "score", card.score + " pontos"));
    top.appendChild(temp);
    return top;
  }

  function botBox(card) {
    var bot = card.bot;
    var state = el("p", "bot-state state-" + bot.state, bot.label);
    var children = [state];
    if (bot.handoff) children.push(el("p", "muted", bot.handoff));
    var buttons = el("div", "buttons");
    var pause = el("button", "pause", "Pausar bot");
    pause.type = "button";
    pause.disabled = bot.state === "opted_out";
    pause.addEventListener("click", function () { act("pause"); });
    var resume = el("button", "resume", "Retomar bot");
    resume.type = "button";
    resume.disabled = bot.state === "opted_out" || (bot.state === "active" && !bot.handoff);
    resume.addEventListener("click", function () { act("resume"); });
    buttons.appendChild(pause);
    buttons.appendChild(resume);
    children.push(buttons);
    return section("Bot", children);
  }

  function fieldList(fields) {
    var list = el("dl", "fields");
    fields.forEach(function (field) {
      list.appendChild(el("dt", null, field.label));
      var dd = el("dd");
      dd.appendChild(el("span", "value", field.value));
      var origin = "fonte: " + field.source + (field.said_at ? " · " + field.said_at : "");
      dd.appendChild(el("span", "source", origin));
      if (field.quote) dd.appendChild(el("q", "quote", field.quote));
      list.appendChild(dd);
    });
    return list;
  }

  function items(rows, render, empty) {
    if (!rows.length) return [el("p", "muted", empty)];
    var list = el("ul", "items");
    rows.forEach(function (row) { list.appendChild(render(row)); });
    return [list];
  }

  function quoteItem(quote) {
    var li = el("li");
    var what = quote.products.join(", ") + (quote.quantity ? " · " + quote.quantity : "");
    li.appendChild(el("strong", null, what || "Orçamento"));
    li.appendChild(el("span", "line", quote.summary));
    li.appendChild(el("span", "muted", quote.status + (quote.created_at ? " · " + quote.created_at : "")));
    return li;
  }

  function questionItem(question) {
    var li = el("li");
    li.appendChild(el("strong", null, question.question));
    if (question.context) li.appendChild(el("span", "line", question.context));
    li.appendChild(el("span", "muted", question.status + (question.created_at ? " · " + question.created_at : "")));
    return li;
  }

  function link(href, text) {
    if (!/^https?:\/\//i.test(String(href))) return el("span", null, text);
    var a = el("a", null, text);
    a.href = href;
    a.target = "_blank";
    a.rel = "noopener noreferrer";
    return a;
  }

  function meetingItem(meeting) {
    var li = el("li");
    li.appendChild(el("strong", null, meeting.starts_at));
    li.appendChild(el("span", "muted", meeting.status + " · " + meeting.seller));
    if (meeting.meet_url) li.appendChild(link(meeting.meet_url, "Google Meet"));
    return li;
  }

  function render(card) {
    cardEl.textContent = "";
    cardEl.appendChild(header(card));
    cardEl.appendChild(botBox(card));
    if (card.summary) cardEl.appendChild(section("Resumo", [el("p", null, card.summary)]));
    var reasons = items(card.score_reasons, function (r) { return el("li", null, r); }, "Sem pontos ainda.");
    cardEl.appendChild(section("Por que " + card.temperature_label.toLowerCase(), reasons));
    var fields = card.fields.length ? [fieldList(card.fields)] : [el("p", "muted", "Nada informado ainda.")];
    cardEl.appendChild(section("Dados do lead", fields));
    cardEl.appendChild(section("Orçamentos", items(card.quotes, quoteItem, "Nenhum orçamento pedido.")));
    var questions = items(card.technical_questions, questionItem, "Nenhuma dúvida técnica.");
    cardEl.appendChild(section("Dúvidas técnicas", questions));
    cardEl.appendChild(section("Reuniões", items(card.meetings, meetingItem, "Nenhuma reunião marcada.")));
    var crm = card.crm
      ? [link(card.crm.url, "Abrir negócio #" + card.crm.deal_id + " no PipeRun")]
      : [el("p", "muted", "Ainda não está no CRM.")];
    cardEl.appendChild(section("CRM", crm));
    cardEl.hidden = false;
  }

  function show(card, message) {
    render(card);
    setStatus(message || "", message ? "ok" : "");
    body.setAttribute("data-state", "card");
    body.setAttribute("data-ready", "1");
  }

  function fail(error) {
    cardEl.hidden = true;
    if (error.status === 404) setStatus("Este contato ainda não é um lead do bot.", "muted");
    else if (error.status === 403) setStatus("Acesso negado: confira o token na URL do app.", "error");
    else setStatus("Não foi possível carregar o lead (" + error.message + ").", "error");
    body.setAttribute("data-state", "error");
    body.setAttribute("data-ready", "1");
  }

  function load(ref) {
    current = ref;
    setStatus("Carregando…");
    var query = new URLSearchParams();
    if (ref.conversation_id) query.set("conversation_id", ref.conversation_id);
    if (ref.contact_id) query.set("contact_id", ref.contact_id);
    api("panel/api/lead?" + query.toString(), "GET").then(function (card) { show(card); }, fail);
  }

  function act(action) {
    if (!current) return;
    var buttons = cardEl.querySelectorAll("button");
    Array.prototype.forEach.call(buttons, function (b) { b.disabled = true; });
    setStatus(action === "pause" ? "Pausando o bot…" : "Retomando o bot…");
    api("panel/api/lead/" + action, "POST", current).then(function (card) {
      show(card, action === "pause" ? "Bot pausado para este lead." : "Bot retomado: ele volta a responder.");
    }, fail);
  }

  window.addEventListener("message", function (event) {
    if (!chatwootOrigin || event.origin !== chatwootOrigin || event.source !== window.parent) return;
    var payload = event.data;
    if (typeof payload === "string") {
      try { payload = JSON.parse(payload); } catch (e) { return; }
    }
    if (!payload || payload.event !== "appContext" || !payload.data) return;
    var conversation = payload.data.conversation || {};
    var contact = payload.data.contact || {};
    var sender = (conversation.meta && conversation.meta.sender) || {};
    var ref = { conversation_id: asId(conversation.id), contact_id: asId(contact.id) || asId(sender.id) };
    if (ref.conversation_id || ref.contact_id) load(ref);
  });

  if (window.parent !== window && chatwootOrigin) {
    window.parent.postMessage("chatwoot-dashboard-app:fetch-info", chatwootOrigin);
  }
})();
