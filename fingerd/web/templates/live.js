// Keeps the page in step with the status file: polls the JSON API with an
// ETag, so an unchanged table costs a 304 and no body.  Text is set with
// textContent only; nothing from the server is ever parsed as HTML.
(function () {
  "use strict";
  var INTERVAL_MS = 400;
  var LIST_STATUS_WIDTH = 200;  // as the server cuts the list (fingerd/finger/answer.py list_status)
  var body = document.body;
  var live = body.getAttribute("data-live");
  if (!live) { return; }
  var etag = null;

  function listStatus(text) {
    var first = Array.from(text.split("\n")[0]);  // characters, as Python counts them
    if (first.length <= LIST_STATUS_WIDTH) { return first.join(""); }
    return first.slice(0, LIST_STATUS_WIDTH - 3).join("") + "...";
  }

  function renderList(users) {
    var list = document.getElementById("users");
    var empty = document.getElementById("empty");
    var names = Object.keys(users).sort();
    while (list.firstChild) { list.removeChild(list.firstChild); }
    names.forEach(function (name) {
      var item = document.createElement("li");
      var link = document.createElement("a");
      link.href = "/~" + encodeURIComponent(name);
      link.textContent = name;
      var status = document.createElement("span");
      status.className = "status";
      status.textContent = listStatus(users[name]);
      item.appendChild(link);
      item.appendChild(document.createTextNode(" "));
      item.appendChild(status);
      list.appendChild(item);
    });
    empty.hidden = names.length > 0;
  }

  function renderUser(found, user) {
    var status = document.getElementById("status");
    status.textContent = found ? user.status : "No such user";
  }

  function poll() {
    var headers = etag ? { "If-None-Match": etag } : {};
    fetch(live, { headers: headers, cache: "no-store" }).then(function (response) {
      if (response.status === 304) { return null; }
      etag = response.headers.get("ETag");
      var found = response.ok;
      return response.json().then(function (data) {
        if (live === "/api/users") { renderList(data); } else { renderUser(found, data); }
      });
    }).catch(function () {}).then(function () { setTimeout(poll, INTERVAL_MS); });
  }
  setTimeout(poll, INTERVAL_MS);
}());
