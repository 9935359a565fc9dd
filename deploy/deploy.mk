# deploy/deploy.mk - installing and deploying convoyd (included by the top-level Makefile).
#   make install [PREFIX=/usr/local] [DESTDIR=]   binaries, systemd unit, default config, model
#   make uninstall [PREFIX=...] [DESTDIR=]        removes what install put there
#   make container-test                           builds the image with podman and tests it
#   build/test_deploy                             the sd_notify protocol test (part of make test)
# Tests run by `make test`: build/test_deploy, tests/deploy_install.sh (install/uninstall into
# a temporary DESTDIR, systemd-analyze verify + security) and tests/deploy_k8s.py (the
# Kubernetes manifests against `convoyd --print-config` and the daemon's routes).

PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
DOCDIR ?= $(PREFIX)/share/doc/convoy
UNITDIR ?= $(PREFIX)/lib/systemd/system
SYSCONFDIR ?= /etc
MODELDIR ?= /var/lib/convoy/models
INSTALL ?= install

# ---- the notify protocol test ------------------------------------------------------------
TEST_DEPLOY := $(BUILD)/test_deploy
TEST_DEPLOY_OBJ := $(BUILD)/tests/deploy_notify.o $(BUILD)/tests/server_util.o \
	$(filter-out $(BUILD)/server/main.o,$(SERVER_OBJ))

$(BUILD)/tests/deploy_notify.o: EXTRA_CFLAGS += $(shell pkg-config --cflags check libcurl 2>/dev/null)

$(TEST_DEPLOY): $(TEST_DEPLOY_OBJ) $(LIB) | $(CONVOYD)
	$(CC) $(LDFLAGS_ALL) -o $@ $(TEST_DEPLOY_OBJ) $(LIB) $(PKG_LIBS) $(SERVER_LIBS) \
		$(shell pkg-config --libs check libcurl 2>/dev/null)

TEST_BINS += $(TEST_DEPLOY) tests/deploy_install.sh tests/deploy_k8s.py

# ---- install / uninstall -----------------------------------------------------------------
# The unit and the config name /usr/local/bin, /etc/convoy and /var/lib/convoy/models: rewritten
# to the chosen BINDIR / SYSCONFDIR / MODELDIR on the way in. An existing config is kept (the default is then
# installed next to it as convoyd.json.default); uninstall removes the config only when it is
# still the default, and the model directory only when empty after removing the default model.
INSTALL_SED = sed -e 's|/usr/local/bin/|$(BINDIR)/|g' -e 's|/usr/local/share/doc/convoy|$(DOCDIR)|g' \
	-e 's|/var/lib/convoy/models|$(MODELDIR)|g' -e 's|/etc/convoy/|$(SYSCONFDIR)/convoy/|g'

.PHONY: install uninstall container-test
install: $(CONVOYD) $(CLI)
	$(INSTALL) -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSCONFDIR)/convoy \
		$(DESTDIR)$(MODELDIR) $(DESTDIR)$(DOCDIR)
	$(INSTALL) -m 755 $(CONVOYD) $(CLI) $(DESTDIR)$(BINDIR)/
	$(INSTALL_SED) systemd/convoyd.service > $(DESTDIR)$(UNITDIR)/convoyd.service.tmp
	chmod 644 $(DESTDIR)$(UNITDIR)/convoyd.service.tmp
	mv $(DESTDIR)$(UNITDIR)/convoyd.service.tmp $(DESTDIR)$(UNITDIR)/convoyd.service
	@cfg=$(DESTDIR)$(SYSCONFDIR)/convoy/convoyd.json; \
	$(INSTALL_SED) systemd/convoyd.json > $$cfg.default; chmod 644 $$cfg.default; \
	if [ -e $$cfg ] && ! cmp -s $$cfg $$cfg.default; then \
		echo "keeping $$cfg (the default is in $$cfg.default)"; \
	else mv $$cfg.default $$cfg; echo "installed $$cfg"; fi
	$(INSTALL) -m 644 models/fashion-mnist.cvy $(DESTDIR)$(MODELDIR)/
	$(INSTALL) -m 644 README.md $(DESTDIR)$(DOCDIR)/
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then systemctl daemon-reload; \
		echo "now: systemctl enable --now convoyd"; fi

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/convoyd $(DESTDIR)$(BINDIR)/convoy \
		$(DESTDIR)$(UNITDIR)/convoyd.service $(DESTDIR)$(MODELDIR)/fashion-mnist.cvy \
		$(DESTDIR)$(DOCDIR)/README.md $(DESTDIR)$(SYSCONFDIR)/convoy/convoyd.json.default
	@cfg=$(DESTDIR)$(SYSCONFDIR)/convoy/convoyd.json; \
	if [ -e $$cfg ] && $(INSTALL_SED) systemd/convoyd.json | cmp -s - $$cfg; then rm -f $$cfg; \
	elif [ -e $$cfg ]; then echo "keeping $$cfg (changed since install)"; fi
	-rmdir $(DESTDIR)$(SYSCONFDIR)/convoy $(DESTDIR)$(MODELDIR) $(DESTDIR)$(DOCDIR) 2>/dev/null
	-rmdir $(DESTDIR)$(dir $(MODELDIR)) 2>/dev/null
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi

# ---- container -----------------------------------------------------------------------------
container-test:
	tools/container_test.sh

-include $(TEST_DEPLOY_OBJ:.o=.d)
